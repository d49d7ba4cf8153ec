/* Check suite of the sparse module. */
#include "testutil.h"

Suite *suite_sparse(void)
{
    Suite *s = suite_create("sparse");
    return s;
}
