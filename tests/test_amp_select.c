/* Check suite of the amplitude selection rules, drop-and-grow and the captured share. */
#include "testutil.h"

Suite *suite_amp_select(void)
{
    Suite *s = suite_create("amp_select");
    return s;
}
