// svg: a small self-contained SVG line-chart writer for benchmark reports (latency CDFs,
// throughput against concurrency). No dependencies; the file opens in any browser and
// renders on GitHub.
//
// A figure is a grid of plots (two columns); each plot has axes with "nice" ticks, a title,
// axis labels, a legend and one polyline (optionally with point markers) per series.
// Series points must be ordered by x for a line to make sense; NaN points are skipped.
// Text is XML-escaped.
//
//   double x[] = {1, 8, 32}, y[] = {10, 60, 150};
//   hl_svg_series s = {.name = "halyard", .x = x, .y = y, .n = 3};
//   hl_svg_plot p = {.title = "throughput", .x_label = "concurrency", .y_label = "tok/s",
//                    .series = &s, .n_series = 1, .log_x = true, .markers = true};
//   hl_svg_write("out.svg", "bench", &p, 1, &err);
#pragma once

#include "common/hl.h"

typedef struct hl_svg_series {
    const char *name;   // legend text
    const double *x;    // (n)
    const double *y;    // (n)
    size_t n;
} hl_svg_series;

typedef struct hl_svg_plot {
    const char *title;
    const char *x_label;
    const char *y_label;
    const hl_svg_series *series; // (n_series), borrowed
    int n_series;
    bool log_x;         // log2-spaced x axis (concurrency sweeps); x values must be > 0
    bool markers;       // a dot at every point (sparse series)
} hl_svg_plot;

// Writes a figure titled `title` with n_plots plots to path. HL_ERR_IO when the file cannot be
// written, HL_ERR_INVAL for n_plots < 1. Plots without finite points get empty axes.
int hl_svg_write(const char *path, const char *title, const hl_svg_plot *plots, int n_plots,
                 hl_error *err);
