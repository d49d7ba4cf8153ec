/* Private declarations of the report module (report.c, read by json.c). Never installed. */
#ifndef SPARSERESID_REPORT_REPORT_H
#define SPARSERESID_REPORT_REPORT_H

#include "residual/residual.h"

/* ---- the report's state (built by report.c, read by access.c and json.c) ---- */
#define MAX_KS 64
#define MAX_BINS (1 << 24)
#define MAX_DRAWS 10000
#define NGROUPS (SRESID_KIND_COUNT + 1) /* the kinds, then "all" */
#define SLOT_ALL SRESID_KIND_COUNT


typedef struct sresid__rtensor {
    sresid_tensor_report fig; /* name and role point at the strings below */
    char *name, *role;
    char *stack;              /* the name before its layer number (util.h) */
    int64_t *shape;
    int64_t numel;
    size_t src;               /* pair index (residual) or tensor index (model) */
    size_t layer_slot;        /* index into layers, or SIZE_MAX */
    uint64_t seed;            /* derived from the options' seed and the name */
    sresid_moments mom;
    sresid_kmeans_result *km; /* nks entries; NULL when k-means did not run */
} sresid__rtensor;

typedef struct sresid__rgroup {
    sresid_moments mom;
    uint64_t tensors, matrices;
    double pr_sum;
    double bits, random_bits;
} sresid__rgroup;

/* A layer is (stack, index): layers are sorted by stack, then index, so a
 * stack's layers are the slots [first, end). */
typedef struct sresid__rlayer {
    const char *stack; /* a tensor's stack string */
    int32_t layer;
    size_t first, end;
    size_t lc;         /* layer_correlation entry of the pair (this, next), or
                          for the stack's last layer its first-vs-last entry */
    sresid__rgroup g;
} sresid__rlayer;

/* A correlation entry with what its public struct has no room for. */
typedef struct sresid__rcorr {
    sresid_correlation_report c;
    const char *stack;
    bool first_last;
} sresid__rcorr;

typedef struct sresid__rskipped {
    char *name;
    const char *why; /* static text */
} sresid__rskipped;

struct sresid_report {
    int32_t source; /* 0 residual, 1 model */
    int32_t layout;
    sresid_report_opts o; /* resolved; o.ks points at ks, no callback */
    int32_t ks[MAX_KS];
    sresid__rtensor *t;
    size_t nt;
    sresid__rgroup groups[NGROUPS];
    sresid__rlayer *layers;
    size_t nlayers;
    sresid__rcorr *pairs, *lcorr;
    size_t npairs, nlcorr;
    sresid__rskipped *skip;
    size_t nskip;
    sresid__file_id *inputs; /* the files the report read: never a JSON output */
    size_t ninputs;
};

/* ---- for json.c (access.c) ---- */
int32_t sresid__report_source(const sresid_report *r);
int32_t sresid__report_layout(const sresid_report *r);
const sresid_report_opts *sresid__report_opts(const sresid_report *r);
const int64_t *sresid__report_shape(const sresid_report *r, size_t i);
bool sresid__report_stats(const sresid_report *r, int what, size_t i, sresid_moment_stats *out);
bool sresid__report_first_last(const sresid_report *r, size_t i);
size_t sresid__report_skipped(const sresid_report *r, size_t i, const char **name,
                              const char **why);

#endif /* SPARSERESID_REPORT_REPORT_H */
