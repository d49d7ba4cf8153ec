/* Table 2 from the sweep's cells: per rule and fraction, the mean and the
 * sample standard deviation over seeds. */
#include <math.h>
#include <stdlib.h>

#include "results.h"

const double demo_fractions[DEMO_NFRACTIONS] = {1.0, 0.5, 0.25, 0.1, 0.05};

static void mean_std(const double *x, int n, double *mean, double *std)
{
    double s = 0, ss = 0;
    for (int i = 0; i < n; i++)
        s += x[i];
    double m = n ? s / n : NAN;
    for (int i = 0; i < n; i++)
        ss += (x[i] - m) * (x[i] - m);
    *mean = m;
    *std = n > 1 ? sqrt(ss / (n - 1)) : 0.0;
}

/* The cell of a rule, fraction and seed, or NULL. */
static const demo_cell *find(const demo_results *r, int rule, double f, int seed)
{
    for (size_t i = 0; i < r->ncells; i++) {
        const demo_cell *c = &r->cells[i];
        if (c->rule == rule && c->fraction == f && c->seed_index == seed)
            return c;
    }
    return NULL;
}

int demo_summarize(demo_results *r)
{
    int ns = r->set.seeds;
    size_t cap = 1 + (DEMO_RULE_COUNT - 1) * (DEMO_NFRACTIONS - 1);
    double *loss = calloc((size_t)ns, sizeof *loss), *impr = calloc((size_t)ns, sizeof *impr);
    double *eff = calloc((size_t)ns, sizeof *eff), *share = calloc((size_t)ns, sizeof *share);
    free(r->rows);
    r->rows = calloc(cap, sizeof *r->rows);
    if (!loss || !impr || !eff || !share || !r->rows) {
        free(loss), free(impr), free(eff), free(share);
        return -1;
    }
    double full = r->base_task_loss - r->ft_task_loss;
    r->nrows = 0;
    for (int rule = DEMO_RULE_ALL; rule < DEMO_RULE_COUNT; rule++)
        for (int k = rule == DEMO_RULE_ALL ? 0 : 1; k < (rule == DEMO_RULE_ALL ? 1 : DEMO_NFRACTIONS);
             k++) {
            double f = demo_fractions[k];
            demo_row *row = &r->rows[r->nrows++];
            row->rule = rule;
            row->fraction = f;
            for (int s = 0; s < ns; s++) {
                const demo_cell *c = find(r, rule, f, s);
                const demo_cell *all = find(r, DEMO_RULE_ALL, 1.0, s);
                double base_impr = all ? r->base_task_loss - all->val_loss : NAN;
                loss[s] = c ? c->val_loss : NAN;
                impr[s] = r->base_task_loss - loss[s];
                eff[s] = impr[s] / base_impr;
                share[s] = base_impr / full;
                if (c)
                    row->trainable = c->trainable;
            }
            row->pct_params = 100.0 * (double)row->trainable / (double)r->nparams;
            mean_std(loss, ns, &row->loss_mean, &row->loss_std);
            mean_std(impr, ns, &row->impr_mean, &row->impr_std);
            mean_std(eff, ns, &row->eff_mean, &row->eff_std);
            if (rule == DEMO_RULE_ALL)
                mean_std(share, ns, &r->share_mean, &r->share_std);
        }
    free(loss), free(impr), free(eff), free(share);
    return 0;
}
