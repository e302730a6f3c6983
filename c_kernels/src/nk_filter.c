#include "nk_filter.h"
#include "nk_common.h"
#include "nk_internal.h"

#include <complex.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- design */

static void pair_poles(const double complex *p, int32_t np, double complex *pairs_a,
                       double complex *pairs_b, int32_t *is_single, int32_t *n_pairs) {
    /* Complex poles with positive imaginary part each give a conjugate pair; real poles are
     * taken two by two; an odd real pole is a first-order section. */
    double reals[2 * NK_FILTER_MAX_SECTIONS];
    int32_t nr = 0, k = 0;
    for (int32_t i = 0; i < np; i++) {
        double im = cimag(p[i]);
        if (fabs(im) <= 1e-12 * (1.0 + cabs(p[i]))) {
            reals[nr++] = creal(p[i]);
        } else if (im > 0) {
            pairs_a[k] = p[i];
            pairs_b[k] = conj(p[i]);
            is_single[k] = 0;
            k++;
        }
    }
    for (int32_t i = 0; i + 1 < nr; i += 2) {
        pairs_a[k] = reals[i];
        pairs_b[k] = reals[i + 1];
        is_single[k] = 0;
        k++;
    }
    if (nr % 2) {
        pairs_a[k] = reals[nr - 1];
        pairs_b[k] = 0;
        is_single[k] = 1;
        k++;
    }
    *n_pairs = k;
}

int nk_butter_sos(int32_t order, int32_t btype, double f_lo, double f_hi, double fs,
                  double *sos_out, int32_t max_sections) {
    if (order < 1 || order > NK_FILTER_MAX_SECTIONS || !sos_out || !(fs > 0)) return NK_ERR_ARG;
    if (!(f_lo > 0 && f_lo < fs / 2)) return NK_ERR_ARG;
    if (btype == NK_BUTTER_BAND && !(f_hi > f_lo && f_hi < fs / 2)) return NK_ERR_ARG;
    if (btype != NK_BUTTER_LOW && btype != NK_BUTTER_HIGH && btype != NK_BUTTER_BAND)
        return NK_ERR_ARG;

    const double pi = 3.14159265358979323846;
    const double fs2 = 2.0 * fs;
    double complex zp[2 * NK_FILTER_MAX_SECTIONS];
    int32_t np = 0;
    double complex k_an = 1.0; /* analog gain */
    double w1 = fs2 * tan(pi * f_lo / fs);

    for (int32_t k = 0; k < order; k++) {
        double complex pk = cexp(I * pi * (2.0 * k + order + 1) / (2.0 * order));
        if (btype == NK_BUTTER_LOW) {
            zp[np++] = pk * w1;
        } else if (btype == NK_BUTTER_HIGH) {
            zp[np++] = w1 / pk;
        } else {
            double w2 = fs2 * tan(pi * f_hi / fs);
            double bw = w2 - w1, w0sq = w1 * w2;
            double complex pb = pk * bw;
            double complex d = csqrt(pb * pb - 4.0 * w0sq);
            zp[np++] = (pb + d) / 2.0;
            zp[np++] = (pb - d) / 2.0;
        }
    }
    if (btype == NK_BUTTER_LOW) {
        k_an = cpow(w1, order);
    } else if (btype == NK_BUTTER_HIGH) {
        k_an = 1.0; /* prototype has no finite zeros; product of (-p) is 1 */
    } else {
        double w2 = fs2 * tan(pi * f_hi / fs);
        k_an = cpow(w2 - w1, order);
    }
    /* Bilinear transform of gain: k_z = k_an * prod(fs2 - z_an) / prod(fs2 - p_an).
     * Analog zeros: none (low), order at 0 (high), order at 0 (band). */
    double complex num = 1.0, den = 1.0;
    int32_t n_zero_at_origin = (btype == NK_BUTTER_LOW) ? 0 : order;
    for (int32_t i = 0; i < n_zero_at_origin; i++) num *= fs2;
    for (int32_t i = 0; i < np; i++) den *= (fs2 - zp[i]);
    double kz = creal(k_an * num / den);
    for (int32_t i = 0; i < np; i++) zp[i] = (fs2 + zp[i]) / (fs2 - zp[i]);

    double complex pa[NK_FILTER_MAX_SECTIONS * 2], pbb[NK_FILTER_MAX_SECTIONS * 2];
    int32_t single[NK_FILTER_MAX_SECTIONS * 2], ns = 0;
    pair_poles(zp, np, pa, pbb, single, &ns);
    if (ns > max_sections) return NK_ERR_CAPACITY;

    /* Digital zeros: low → all at −1, high → all at +1, band → order at +1 and order at −1.
     * Each section takes two zeros (one for a first-order section). */
    int32_t zeros_plus = (btype == NK_BUTTER_LOW) ? 0 : (btype == NK_BUTTER_HIGH ? order : order);
    int32_t zeros_minus = (btype == NK_BUTTER_HIGH) ? 0 : order;
    double gain_each = pow(fabs(kz), 1.0 / ns);
    for (int32_t s = 0; s < ns; s++) {
        double *row = sos_out + 6 * s;
        double z[2];
        int32_t nz = single[s] ? 1 : 2;
        for (int32_t j = 0; j < nz; j++) {
            /* band: one +1 and one −1 per section keeps each section a band-pass */
            if (btype == NK_BUTTER_BAND) {
                if (j == 0 && zeros_plus > 0) { z[j] = 1.0; zeros_plus--; }
                else if (zeros_minus > 0) { z[j] = -1.0; zeros_minus--; }
                else { z[j] = 1.0; zeros_plus--; }
            } else if (zeros_plus > 0) { z[j] = 1.0; zeros_plus--; }
            else { z[j] = -1.0; zeros_minus--; }
        }
        double g = (s == 0 && kz < 0) ? -gain_each : gain_each;
        if (nz == 1) {
            row[0] = g; row[1] = -g * z[0]; row[2] = 0.0;
            row[3] = 1.0; row[4] = -creal(pa[s]); row[5] = 0.0;
        } else {
            row[0] = g; row[1] = -g * (z[0] + z[1]); row[2] = g * z[0] * z[1];
            row[3] = 1.0;
            row[4] = -creal(pa[s] + pbb[s]);
            row[5] = creal(pa[s] * pbb[s]);
        }
    }
    return ns;
}

/* ---------------------------------------------------------------- cascade */

typedef struct {
    float b0, b1, b2, a1, a2;
} nk_biquad;

struct nk_bandpass {
    int32_t n_channels, n_sections;
    nk_biquad sec[NK_FILTER_MAX_SECTIONS];
    float *state; /* [n_sections][2][n_channels], in the same allocation */
};

static int load_sections(nk_biquad *sec, const double *sos, int32_t n_sections) {
    if (!sos || n_sections < 1 || n_sections > NK_FILTER_MAX_SECTIONS) return NK_ERR_ARG;
    for (int32_t s = 0; s < n_sections; s++) {
        const double *r = sos + 6 * s;
        for (int j = 0; j < 6; j++)
            if (!isfinite(r[j])) return NK_ERR_ARG;
        if (r[3] != 1.0) return NK_ERR_ARG;
        sec[s].b0 = (float)r[0]; sec[s].b1 = (float)r[1]; sec[s].b2 = (float)r[2];
        sec[s].a1 = (float)r[4]; sec[s].a2 = (float)r[5];
    }
    return NK_OK;
}

int nk_bandpass_new(int32_t n_channels, const double *sos, int32_t n_sections,
                    nk_bandpass **out) {
    if (!out) return NK_ERR_ARG;
    *out = NULL;
    if (n_channels < 1 || n_channels > (1 << 20)) return NK_ERR_ARG;
    nk_bandpass *f = calloc(1, sizeof *f);
    if (!f) return NK_ERR_NOMEM;
    if (load_sections(f->sec, sos, n_sections) != NK_OK) { free(f); return NK_ERR_ARG; }
    f->n_channels = n_channels;
    f->n_sections = n_sections;
    f->state = calloc((size_t)n_sections * 2 * (size_t)n_channels, sizeof(float));
    if (!f->state) { free(f); return NK_ERR_NOMEM; }
    *out = f;
    return NK_OK;
}

/* One row (one time step, all channels) through every section, in place. */
static inline void cascade_row(const nk_biquad *sec, int32_t ns, float *state, int32_t C,
                               float *restrict row) {
    for (int32_t s = 0; s < ns; s++) {
        const float b0 = sec[s].b0, b1 = sec[s].b1, b2 = sec[s].b2, a1 = sec[s].a1,
                    a2 = sec[s].a2;
        float *restrict s1 = state + (size_t)(2 * s) * (size_t)C;
        float *restrict s2 = s1 + C;
        for (int32_t c = 0; c < C; c++) {
            const float x = row[c];
            const float y = b0 * x + s1[c];
            s1[c] = (b1 * x - a1 * y) + s2[c];
            s2[c] = b2 * x - a2 * y;
            row[c] = y;
        }
    }
}

NK_HOT int nk_bandpass_process(nk_bandpass *f, const int16_t *in, float *out, int32_t n_samples) {
    if (!f || !in || !out || n_samples < 0) return NK_ERR_ARG;
    const int32_t C = f->n_channels;
    for (int32_t t = 0; t < n_samples; t++) {
        const int16_t *restrict xi = in + (size_t)t * (size_t)C;
        float *restrict row = out + (size_t)t * (size_t)C;
        for (int32_t c = 0; c < C; c++) row[c] = (float)xi[c];
        cascade_row(f->sec, f->n_sections, f->state, C, row);
    }
    return NK_OK;
}

int nk_bandpass_process_f32(nk_bandpass *f, const float *in, float *out, int32_t n_samples) {
    if (!f || !in || !out || n_samples < 0) return NK_ERR_ARG;
    const int32_t C = f->n_channels;
    for (int32_t t = 0; t < n_samples; t++) {
        const float *xi = in + (size_t)t * (size_t)C;
        float *row = out + (size_t)t * (size_t)C;
        if (row != xi) memcpy(row, xi, (size_t)C * sizeof(float));
        cascade_row(f->sec, f->n_sections, f->state, C, row);
    }
    return NK_OK;
}

void nk_bandpass_reset(nk_bandpass *f) {
    if (f) memset(f->state, 0, (size_t)f->n_sections * 2 * (size_t)f->n_channels * sizeof(float));
}

int nk_bandpass_settle(nk_bandpass *f, const int16_t *x0) {
    if (!f || !x0) return NK_ERR_ARG;
    const int32_t C = f->n_channels;
    for (int32_t c = 0; c < C; c++) {
        double u = (double)x0[c];
        for (int32_t s = 0; s < f->n_sections; s++) {
            const nk_biquad *q = &f->sec[s];
            const double den = 1.0 + (double)q->a1 + (double)q->a2;
            /* DC gain of the section; a pole at z = 1 has no steady state: start from 0 */
            const double y = den != 0.0 ? u * ((double)q->b0 + (double)q->b1 + (double)q->b2) / den
                                        : 0.0;
            const double s2 = (double)q->b2 * u - (double)q->a2 * y;
            const double s1 = ((double)q->b1 * u - (double)q->a1 * y) + s2;
            float *st = f->state + (size_t)(2 * s) * (size_t)C;
            st[c] = den != 0.0 ? (float)s1 : 0.0f;
            st[(size_t)C + (size_t)c] = den != 0.0 ? (float)s2 : 0.0f;
            u = y;
        }
    }
    return NK_OK;
}

void nk_bandpass_free(nk_bandpass *f) {
    if (!f) return;
    free(f->state);
    free(f);
}

/* ---------------------------------------------------------------- LFP */

struct nk_lfp {
    nk_bandpass *lp;
    int32_t decimation;
    float *row; /* one row of scratch */
};

int nk_lfp_new(int32_t n_channels, const double *sos, int32_t n_sections, int32_t decimation,
               nk_lfp **out) {
    if (!out) return NK_ERR_ARG;
    *out = NULL;
    if (decimation < 1 || decimation > 4096) return NK_ERR_ARG;
    nk_lfp *f = calloc(1, sizeof *f);
    if (!f) return NK_ERR_NOMEM;
    const int st = nk_bandpass_new(n_channels, sos, n_sections, &f->lp);
    if (st != NK_OK) { nk_lfp_free(f); return st; }
    f->row = calloc((size_t)(n_channels > 0 ? n_channels : 1), sizeof(float));
    if (!f->row) { nk_lfp_free(f); return NK_ERR_NOMEM; }
    f->decimation = decimation;
    *out = f;
    return NK_OK;
}

NK_HOT int nk_lfp_process(nk_lfp *f, const int16_t *in, int32_t n_samples, int64_t first_sample,
                   float *out, int32_t max_out, int32_t *n_out) {
    if (!f || !in || !out || !n_out || n_samples < 0 || first_sample < 0) return NK_ERR_ARG;
    const int32_t C = f->lp->n_channels;
    /* Count first so that a too-small buffer changes nothing. */
    int32_t need = 0;
    for (int32_t t = 0; t < n_samples; t++)
        if ((first_sample + t) % f->decimation == 0) need++;
    if (need > max_out) return NK_ERR_CAPACITY;
    int32_t k = 0;
    for (int32_t t = 0; t < n_samples; t++) {
        const int16_t *xi = in + (size_t)t * (size_t)C;
        for (int32_t c = 0; c < C; c++) f->row[c] = (float)xi[c];
        cascade_row(f->lp->sec, f->lp->n_sections, f->lp->state, C, f->row);
        if ((first_sample + t) % f->decimation == 0) {
            memcpy(out + (size_t)k * (size_t)C, f->row, (size_t)C * sizeof(float));
            k++;
        }
    }
    *n_out = k;
    return NK_OK;
}

void nk_lfp_reset(nk_lfp *f) {
    if (f) nk_bandpass_reset(f->lp);
}

int nk_lfp_settle(nk_lfp *f, const int16_t *x0) {
    return f ? nk_bandpass_settle(f->lp, x0) : NK_ERR_ARG;
}

void nk_lfp_free(nk_lfp *f) {
    if (!f) return;
    nk_bandpass_free(f->lp);
    free(f->row);
    free(f);
}
