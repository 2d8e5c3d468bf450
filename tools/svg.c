// svg: line charts as plain SVG text (see svg.h).
#include "tools/svg.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>

#define PLOT_W 520.0
#define PLOT_H 340.0
#define MARGIN_L 72.0
#define MARGIN_R 18.0
#define MARGIN_T 34.0
#define MARGIN_B 48.0
#define FIG_TITLE_H 36.0
#define N_COLS 2

static const char *const palette[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e",
                                      "#9467bd", "#8c564b", "#e377c2", "#17becf"};

typedef struct axis {
    double lo, hi;
    bool log2;
} axis;

static void put_escaped(FILE *f, const char *s) {
    for (; s && *s; s++) {
        switch (*s) {
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '&': fputs("&amp;", f); break;
        case '"': fputs("&quot;", f); break;
        default: fputc(*s, f);
        }
    }
}

// A "nice" tick step (1, 2 or 5 times a power of ten) giving about `target` ticks over span.
static double nice_step(double span, int target) {
    if (!(span > 0)) return 1;
    double raw = span / target;
    double mag = pow(10, floor(log10(raw)));
    double f = raw / mag;
    double nice = f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10;
    return nice * mag;
}

static bool point_ok(const hl_svg_series *s, size_t i, bool log_x) {
    return isfinite(s->x[i]) && isfinite(s->y[i]) && (!log_x || s->x[i] > 0);
}

// Data range of every finite point over all series of a plot; false when there is none.
static bool data_range(const hl_svg_plot *p, double *x0, double *x1, double *y0, double *y1) {
    bool any = false;
    for (int k = 0; k < p->n_series; k++) {
        const hl_svg_series *s = &p->series[k];
        for (size_t i = 0; i < s->n; i++) {
            if (!point_ok(s, i, p->log_x)) continue;
            if (!any || s->x[i] < *x0) *x0 = s->x[i];
            if (!any || s->x[i] > *x1) *x1 = s->x[i];
            if (!any || s->y[i] < *y0) *y0 = s->y[i];
            if (!any || s->y[i] > *y1) *y1 = s->y[i];
            any = true;
        }
    }
    return any;
}

static axis linear_axis(double lo, double hi) {
    if (lo > 0) lo = 0; // latencies and rates read best from zero
    if (hi <= lo) hi = lo + 1;
    double step = nice_step(hi - lo, 5);
    return (axis){.lo = floor(lo / step) * step, .hi = ceil(hi / step) * step, .log2 = false};
}

static axis log2_axis(double lo, double hi) {
    double a = floor(log2(lo)), b = ceil(log2(hi));
    if (b <= a) b = a + 1;
    return (axis){.lo = a, .hi = b, .log2 = true};
}

static double axis_frac(const axis *a, double v) {
    double t = a->log2 ? log2(v) : v;
    return (t - a->lo) / (a->hi - a->lo);
}

static void fmt_tick(char *buf, size_t n, double v) {
    if (fabs(v) >= 1e5 || (fabs(v) < 1e-3 && v != 0)) snprintf(buf, n, "%.0e", v);
    else snprintf(buf, n, "%g", v);
}

static void draw_x_ticks(FILE *f, const axis *ax, double ox, double oy, double w, double h) {
    double step = ax->log2 ? (ax->hi - ax->lo > 10 ? 2 : 1) : nice_step(ax->hi - ax->lo, 5);
    for (double t = ax->lo; t <= ax->hi + step * 1e-6; t += step) {
        double v = ax->log2 ? exp2(t) : t;
        double px = ox + axis_frac(ax, v) * w;
        char lab[32];
        fmt_tick(lab, sizeof lab, v);
        fprintf(f, "<line x1='%.1f' y1='%.1f' x2='%.1f' y2='%.1f' stroke='#ddd'/>\n", px, oy, px,
                oy + h);
        fprintf(f, "<text x='%.1f' y='%.1f' text-anchor='middle'>%s</text>\n", px, oy + h + 16,
                lab);
    }
}

static void draw_y_ticks(FILE *f, const axis *ay, double ox, double oy, double w, double h) {
    double step = nice_step(ay->hi - ay->lo, 5);
    for (double t = ay->lo; t <= ay->hi + step * 1e-6; t += step) {
        double py = oy + h - axis_frac(ay, t) * h;
        char lab[32];
        fmt_tick(lab, sizeof lab, t);
        fprintf(f, "<line x1='%.1f' y1='%.1f' x2='%.1f' y2='%.1f' stroke='#ddd'/>\n", ox, py,
                ox + w, py);
        fprintf(f, "<text x='%.1f' y='%.1f' text-anchor='end'>%s</text>\n", ox - 6, py + 4, lab);
    }
}

static void draw_series(FILE *f, const hl_svg_plot *p, int k, const axis *ax, const axis *ay,
                        double ox, double oy, double w, double h) {
    const hl_svg_series *s = &p->series[k];
    const char *color = palette[k % (int)(sizeof palette / sizeof palette[0])];
    fprintf(f, "<polyline fill='none' stroke='%s' stroke-width='1.8' points='", color);
    for (size_t i = 0; i < s->n; i++) {
        if (!point_ok(s, i, p->log_x)) continue;
        fprintf(f, "%.1f,%.1f ", ox + axis_frac(ax, s->x[i]) * w,
                oy + h - axis_frac(ay, s->y[i]) * h);
    }
    fputs("'/>\n", f);
    for (size_t i = 0; p->markers && i < s->n; i++) {
        if (!point_ok(s, i, p->log_x)) continue;
        fprintf(f, "<circle cx='%.1f' cy='%.1f' r='3' fill='%s'/>\n",
                ox + axis_frac(ax, s->x[i]) * w, oy + h - axis_frac(ay, s->y[i]) * h, color);
    }
    double ly = oy + 14 + 16 * k; // legend, top left inside the plot
    fprintf(f, "<rect x='%.1f' y='%.1f' width='14' height='3' fill='%s'/>\n", ox + 8, ly - 4,
            color);
    fprintf(f, "<text x='%.1f' y='%.1f'>", ox + 26, ly);
    put_escaped(f, s->name);
    fputs("</text>\n", f);
}

static void draw_plot(FILE *f, const hl_svg_plot *p, double x, double y) {
    double ox = x + MARGIN_L, oy = y + MARGIN_T;
    double w = PLOT_W - MARGIN_L - MARGIN_R, h = PLOT_H - MARGIN_T - MARGIN_B;
    fprintf(f, "<text x='%.1f' y='%.1f' text-anchor='middle' font-weight='bold'>", ox + w / 2,
            y + 20);
    put_escaped(f, p->title);
    fprintf(f, "</text>\n<text x='%.1f' y='%.1f' text-anchor='middle'>", ox + w / 2, oy + h + 36);
    put_escaped(f, p->x_label);
    fprintf(f, "</text>\n<text transform='translate(%.1f,%.1f) rotate(-90)' text-anchor='middle'>",
            x + 16, oy + h / 2);
    put_escaped(f, p->y_label);
    fputs("</text>\n", f);
    double x0 = 0, x1 = 1, y0 = 0, y1 = 1;
    bool any = data_range(p, &x0, &x1, &y0, &y1);
    axis ax = p->log_x && any ? log2_axis(x0, x1) : linear_axis(x0, x1);
    axis ay = linear_axis(y0, y1);
    draw_x_ticks(f, &ax, ox, oy, w, h);
    draw_y_ticks(f, &ay, ox, oy, w, h);
    fprintf(f, "<rect x='%.1f' y='%.1f' width='%.1f' height='%.1f' fill='none' stroke='#444'/>\n",
            ox, oy, w, h);
    for (int k = 0; any && k < p->n_series; k++) draw_series(f, p, k, &ax, &ay, ox, oy, w, h);
}

int hl_svg_write(const char *path, const char *title, const hl_svg_plot *plots, int n_plots,
                 hl_error *err) {
    if (n_plots < 1) return hl_errorf(err, HL_ERR_INVAL, "svg: nothing to plot");
    FILE *f = fopen(path, "w");
    if (!f) return hl_errorf(err, HL_ERR_IO, "open %s: %s", path, strerror(errno));
    int cols = n_plots < N_COLS ? n_plots : N_COLS;
    int rows = (n_plots + N_COLS - 1) / N_COLS;
    double fw = cols * PLOT_W, fh = FIG_TITLE_H + rows * PLOT_H;
    fprintf(f,
            "<svg xmlns='http://www.w3.org/2000/svg' width='%.0f' height='%.0f' viewBox='0 0 %.0f "
            "%.0f' "
            "font-family='sans-serif' font-size='12'>\n",
            fw, fh, fw, fh);
    fprintf(f, "<rect width='100%%' height='100%%' fill='white'/>\n");
    fprintf(f, "<text x='%.1f' y='24' text-anchor='middle' font-size='15' font-weight='bold'>",
            fw / 2);
    put_escaped(f, title);
    fputs("</text>\n", f);
    for (int i = 0; i < n_plots; i++)
        draw_plot(f, &plots[i], (i % N_COLS) * PLOT_W, FIG_TITLE_H + (i / N_COLS) * PLOT_H);
    fputs("</svg>\n", f);
    if (ferror(f) | fclose(f))
        return hl_errorf(err, HL_ERR_IO, "write %s: %s", path, strerror(errno));
    return HL_OK;
}
