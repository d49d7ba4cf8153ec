/* Check suite of the mask module. */
#include "testutil.h"

Suite *suite_mask(void)
{
    Suite *s = suite_create("mask");
    return s;
}
