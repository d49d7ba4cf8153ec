/* Private declarations of the report module (report.c, read by json.c). Never installed. */
#ifndef SPARSERESID_REPORT_REPORT_H
#define SPARSERESID_REPORT_REPORT_H

#include "residual/residual.h"

/* ---- report (report.c, read by report_json.c) ---- */
int32_t sresid__report_source(const sresid_report *r);
int32_t sresid__report_layout(const sresid_report *r);
const sresid_report_opts *sresid__report_opts(const sresid_report *r);
const int64_t *sresid__report_shape(const sresid_report *r, size_t i);
bool sresid__report_stats(const sresid_report *r, int what, size_t i, sresid_moment_stats *out);
size_t sresid__report_skipped(const sresid_report *r, size_t i, const char **name,
                              const char **why);

#endif /* SPARSERESID_REPORT_REPORT_H */
