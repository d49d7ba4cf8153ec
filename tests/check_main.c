/* Runs every Check suite of the library. */
#include <stdio.h>
#include <stdlib.h>

#include "testutil.h"


int main(void)
{
    Suite *(*const suites[])(void) = {
        suite_common, suite_jobs, suite_dtype,  suite_names,    suite_model,
        suite_malformed, suite_shards, suite_residual, suite_fixture, suite_stats, suite_matrix, suite_report,
        suite_mask, suite_optim, suite_amp, suite_amp_select, suite_sparse, suite_safety,
        suite_cancel,
    };
    (void)tu_tmpdir();
    SRunner *sr = srunner_create(NULL);
    for (size_t i = 0; i < sizeof suites / sizeof suites[0]; i++)
        srunner_add_suite(sr, suites[i]());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
