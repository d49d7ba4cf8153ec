/* placeholder until the suite lands */
#include "testutil.h"
Suite *suite_matrix(void)
{
    return suite_create("matrix");
}
