/* Check suite of the optim module. */
#include "testutil.h"

Suite *suite_optim(void)
{
    Suite *s = suite_create("optim");
    return s;
}
