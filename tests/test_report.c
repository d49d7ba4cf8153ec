/* placeholder until the suite lands */
#include "testutil.h"
Suite *suite_report(void)
{
    return suite_create("report");
}
