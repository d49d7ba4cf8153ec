/* The efficiency chart as hand-written SVG: efficiency (improvement as a
 * share of the 100 % improvement) against the fraction of scores trained,
 * log x axis, one line per selection rule with ± std error bars, the
 * study's magnitude line dashed, axes, ticks, labels and a legend. */
#include <math.h>
#include <stdio.h>

#include "atomic.h"
#include "results.h"

#define W 760
#define H 460
#define LEFT 78
#define RIGHT 190 /* room for the legend */
#define TOP 48
#define BOTTOM 62

static const double study_eff[DEMO_NFRACTIONS] = {1.0, 0.52, 0.23, -0.30, -0.52};
static const char *const colors[DEMO_RULE_COUNT] = {"#000000", "#1f77b4", "#ff7f0e",
                                                    "#2ca02c", "#d62728", "#9467bd"};

typedef struct axes {
    double xlo, xhi, ylo, yhi; /* log10 fraction, efficiency in % */
} axes;

static double px(const axes *a, double f)
{
    return LEFT + (log10(f) - a->xlo) / (a->xhi - a->xlo) * (W - LEFT - RIGHT);
}

static double py(const axes *a, double pct)
{
    return TOP + (a->yhi - pct) / (a->yhi - a->ylo) * (H - TOP - BOTTOM);
}

/* Efficiency of a rule at fraction index k (100 % is the shared run). */
static const demo_row *row_of(const demo_results *r, int rule, int k)
{
    for (size_t i = 0; i < r->nrows; i++)
        if ((k == 0 ? r->rows[i].rule == DEMO_RULE_ALL : r->rows[i].rule == rule) &&
            r->rows[i].fraction == demo_fractions[k])
            return &r->rows[i];
    return NULL;
}

int demo_write_svg(const demo_results *r, const char *path, char *err, size_t errlen)
{
    /* y range: the data with error bars and the study's line, in steps of 25 */
    double lo = -60, hi = 110;
    for (int rule = DEMO_RULE_MAGNITUDE; rule < DEMO_RULE_COUNT; rule++)
        for (int k = 1; k < DEMO_NFRACTIONS; k++) {
            const demo_row *w = row_of(r, rule, k);
            if (w && isfinite(w->eff_mean)) {
                double sd = isfinite(w->eff_std) ? w->eff_std : 0;
                lo = fmin(lo, 100 * (w->eff_mean - sd));
                hi = fmax(hi, 100 * (w->eff_mean + sd));
            }
        }
    lo = fmax(lo, -1000);
    hi = fmin(hi, 1000);
    double step = hi - lo > 400 ? 100 : hi - lo > 200 ? 50 : 25;
    axes a = {log10(0.04), log10(1.25), floor(lo / step) * step, ceil(hi / step) * step};

    demo_afile f;
    if (demo_afile_open(&f, path, err, errlen))
        return -1;
    FILE *o = f.f;
    fprintf(o,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
            "viewBox=\"0 0 %d %d\" font-family=\"sans-serif\" font-size=\"13\">\n"
            "<title>Amplitude-only fine-tuning: efficiency against the fraction of scores "
            "trained</title>\n"
            "<rect x=\"0\" y=\"0\" width=\"%d\" height=\"%d\" fill=\"#ffffff\"/>\n"
            "<text x=\"%d\" y=\"26\" text-anchor=\"middle\" font-size=\"15\" "
            "font-weight=\"bold\">Amplitude-only fine-tuning: efficiency vs fraction "
            "trained</text>\n",
            W, H, W, H, W, H, (LEFT + W - RIGHT) / 2);

    /* grid, ticks and tick labels */
    fprintf(o, "<g stroke=\"#dddddd\" stroke-width=\"1\">\n");
    for (double y = a.ylo; y <= a.yhi + 1e-9; y += step)
        fprintf(o, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\"/>\n", LEFT, py(&a, y),
                W - RIGHT, py(&a, y));
    for (int k = 0; k < DEMO_NFRACTIONS; k++)
        fprintf(o, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\"/>\n",
                px(&a, demo_fractions[k]), TOP, px(&a, demo_fractions[k]), H - BOTTOM);
    fprintf(o, "</g>\n");
    if (a.ylo < 0 && a.yhi > 0)
        fprintf(o,
                "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#888888\" "
                "stroke-width=\"1\"/>\n",
                LEFT, py(&a, 0), W - RIGHT, py(&a, 0));
    fprintf(o,
            "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" "
            "stroke=\"#000000\"/>\n",
            LEFT, TOP, W - LEFT - RIGHT, H - TOP - BOTTOM);
    for (double y = a.ylo; y <= a.yhi + 1e-9; y += step)
        fprintf(o, "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%.0f %%</text>\n", LEFT - 6,
                py(&a, y) + 4, y);
    for (int k = 0; k < DEMO_NFRACTIONS; k++)
        fprintf(o, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%g %%</text>\n",
                px(&a, demo_fractions[k]), H - BOTTOM + 18, 100 * demo_fractions[k]);
    fprintf(o,
            "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">fraction of scores trained (log "
            "scale)</text>\n"
            "<text x=\"18\" y=\"%d\" text-anchor=\"middle\" transform=\"rotate(-90 18 %d)\">"
            "efficiency (%% of the all-scores improvement)</text>\n",
            (LEFT + W - RIGHT) / 2, H - 18, (TOP + H - BOTTOM) / 2, (TOP + H - BOTTOM) / 2);

    /* the study's magnitude rule, dashed */
    fprintf(o, "<polyline fill=\"none\" stroke=\"#999999\" stroke-width=\"2\" "
               "stroke-dasharray=\"6 4\" points=\"");
    for (int k = 0; k < DEMO_NFRACTIONS; k++)
        fprintf(o, "%s%.1f,%.1f", k ? " " : "", px(&a, demo_fractions[k]),
                py(&a, 100 * study_eff[k]));
    fprintf(o, "\"/>\n");

    /* one line per rule, with error bars; rules shifted a little sideways
     * so their bars do not hide each other */
    for (int rule = DEMO_RULE_MAGNITUDE; rule < DEMO_RULE_COUNT; rule++) {
        double dx = (rule - 3) * 3.0;
        fprintf(o, "<g stroke=\"%s\" fill=\"%s\">\n<polyline fill=\"none\" stroke-width=\"2\" "
                   "points=\"",
                colors[rule], colors[rule]);
        int first = 1;
        for (int k = 0; k < DEMO_NFRACTIONS; k++) {
            const demo_row *w = row_of(r, rule, k);
            double e = k == 0 ? 100 : w ? 100 * w->eff_mean : NAN;
            if (!isfinite(e))
                continue;
            e = fmin(fmax(e, a.ylo), a.yhi);
            fprintf(o, "%s%.1f,%.1f", first ? "" : " ", px(&a, demo_fractions[k]) + dx,
                    py(&a, e));
            first = 0;
        }
        fprintf(o, "\"/>\n");
        for (int k = 1; k < DEMO_NFRACTIONS; k++) {
            const demo_row *w = row_of(r, rule, k);
            if (!w || !isfinite(w->eff_mean))
                continue;
            double x = px(&a, demo_fractions[k]) + dx;
            double e = fmin(fmax(100 * w->eff_mean, a.ylo), a.yhi);
            double sd = isfinite(w->eff_std) ? 100 * w->eff_std : 0;
            double y1 = py(&a, fmin(fmax(100 * w->eff_mean - sd, a.ylo), a.yhi));
            double y2 = py(&a, fmin(fmax(100 * w->eff_mean + sd, a.ylo), a.yhi));
            fprintf(o, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" "
                       "stroke-width=\"1\"/>\n",
                    x, y1, x, y2);
            fprintf(o, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3.5\"/>\n", x, py(&a, e));
        }
        fprintf(o, "</g>\n");
    }
    fprintf(o, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"4\" fill=\"#000000\"/>\n", px(&a, 1.0),
            py(&a, 100));

    /* legend */
    int lx = W - RIGHT + 16, ly = TOP + 8;
    fprintf(o, "<g font-size=\"12\">\n");
    for (int rule = DEMO_RULE_MAGNITUDE; rule <= DEMO_RULE_COUNT; rule++) {
        int study = rule == DEMO_RULE_COUNT;
        int y = ly + 20 * (rule - DEMO_RULE_MAGNITUDE);
        fprintf(o,
                "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"%s\" "
                "stroke-width=\"2\"%s/>\n"
                "<text x=\"%d\" y=\"%d\">%s</text>\n",
                lx, y, lx + 24, y, study ? "#999999" : colors[rule],
                study ? " stroke-dasharray=\"6 4\"" : "", lx + 30, y + 4,
                study ? "study, magnitude" : demo_rule_name(rule));
    }
    fprintf(o,
            "<text x=\"%d\" y=\"%d\" fill=\"#555555\">%d seed%s; bars: ± 1 std</text>\n"
            "<text x=\"%d\" y=\"%d\" fill=\"#555555\">100 %%: all scores</text>\n</g>\n",
            lx, ly + 20 * (DEMO_RULE_COUNT - DEMO_RULE_MAGNITUDE + 1) + 6, r->set.seeds,
            r->set.seeds == 1 ? "" : "s", lx,
            ly + 20 * (DEMO_RULE_COUNT - DEMO_RULE_MAGNITUDE + 1) + 24);
    fprintf(o, "</svg>\n");
    return demo_afile_commit(&f, err, errlen);
}
