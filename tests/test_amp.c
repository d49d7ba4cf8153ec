/* Check suite of the amp module. */
#include "testutil.h"

Suite *suite_amp(void)
{
    Suite *s = suite_create("amp");
    return s;
}
