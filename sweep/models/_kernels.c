/* CPU kernels for LeNet in channels-last (sweep.models.kernels): its 2x2 max pooling and its first
   convolution (one input channel per group). Their timings against torch's: docs/benchmarks.md, "CPU
   trials: channels-last, fused optimizer steps, pooling first, compiled kernels".

   ## 2x2 max pooling

   torch's channels-last max pooling vectorises over the channels, and LeNet's first conv has six: these
   loops walk a row of windows at a time and compile without branches. They give exactly torch's numbers:

   - forward: the window is scanned row by row and a later value wins when it is greater or NaN, as in
     ATen's cpu_max_pool_channels_last (so a window's last NaN, else its first maximum), value and place;
   - backward: each input's gradient is 0 + the output's gradient where it is the window's argmax, else 0,
     as ATen's backward adds the gradient into a zeroed tensor (0 + -0.0 is +0.0: the sign bit agrees).

   The argmax is kept as its place in the window, 0..3 (uint8), instead of torch's int64 flat index.
   No arithmetic but `0 + g`, so no contraction into FMA changes a result; the AVX2 clone and the default
   one give the same bits. Shapes: x (N, H, W, C) contiguous, y and arg (N, H/2, W/2, C); an odd last row
   or column is left out (floor mode) and gets a zero gradient.

   ## A convolution with one input channel per group
   LeNet's conv1 (1 -> 6 channels, 5x5) and a fused bundle's (K members: K groups), which oneDNN runs far
   below its speed on conv2: here each group's input plane is walked 8 output columns at a time with the
   group's output channels in registers, and the weight gradient keeps per-lane partial sums.
   Not oneDNN's numbers: the sums run in another order (float rounding). Their order is fixed here, the
   same for every group and every build:
   - forward: y = bias, then + w[i][j] * x[r + i][c + j] for i, then j, one rounding per product and per sum
     (compiled with -ffp-contract=off: no FMA, so the AVX2 clone and the plain one agree bit for bit);
   - weight and bias gradients: lane l (output column mod 8) sums its terms image by image, row by row, then
     the 8 lanes are added in order.
   So a member of a fused bundle gets exactly the conv1 of its unfused trial.

   The Python entry points take data pointers and sizes; kernels.py checks dtypes, devices and layouts,
   and the entry points themselves refuse sizes these loops do not handle (a ValueError, nothing written). */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__linux__) && (defined(__GNUC__) || defined(__clang__))
#define CLONES __attribute__((target_clones("avx2", "default")))
#else
#define CLONES
#endif

static inline __attribute__((always_inline)) void
pool_row(const float *restrict r0, const float *restrict r1, float *restrict y, uint8_t *restrict arg,
         int64_t wo, int64_t c) {
    for (int64_t j = 0; j < wo; j++) {
        const float *p0 = r0 + 2 * j * c, *p1 = p0 + c, *p2 = r1 + 2 * j * c, *p3 = p2 + c;
        float *yo = y + j * c;
        uint8_t *ao = arg + j * c;
        for (int64_t k = 0; k < c; k++) {
            float m = p0[k], v;
            int a = 0, t;
            v = p1[k]; t = (v > m) | (v != v); m = t ? v : m; a = t ? 1 : a;
            v = p2[k]; t = (v > m) | (v != v); m = t ? v : m; a = t ? 2 : a;
            v = p3[k]; t = (v > m) | (v != v); m = t ? v : m; a = t ? 3 : a;
            yo[k] = m;
            ao[k] = (uint8_t)a;
        }
    }
}

CLONES static void
pool2_forward(const float *restrict x, float *restrict y, uint8_t *restrict arg, int64_t n, int64_t h,
              int64_t w, int64_t c) {
    int64_t ho = h / 2, wo = w / 2;
    for (int64_t b = 0; b < n; b++)
        for (int64_t i = 0; i < ho; i++) {
            const float *r0 = x + (b * h + 2 * i) * w * c, *r1 = r0 + w * c;
            int64_t o = (b * ho + i) * wo * c;
            /* LeNet's channel counts as constants: the compiler unrolls and vectorises the channel loop */
            if (c == 6) pool_row(r0, r1, y + o, arg + o, wo, 6);
            else if (c == 16) pool_row(r0, r1, y + o, arg + o, wo, 16);
            else pool_row(r0, r1, y + o, arg + o, wo, c);
        }
}

static inline __attribute__((always_inline)) void
unpool_row(const float *restrict g, const uint8_t *restrict arg, float *restrict q0r, float *restrict q1r,
           int64_t wo, int64_t c) {
    for (int64_t j = 0; j < wo; j++) {
        const float *go = g + j * c;
        const uint8_t *ao = arg + j * c;
        float *restrict q0 = q0r + 2 * j * c, *restrict q1 = q0r + 2 * j * c + c;
        float *restrict q2 = q1r + 2 * j * c, *restrict q3 = q1r + 2 * j * c + c;
        for (int64_t k = 0; k < c; k++) {
            float v = 0.0f + go[k];
            uint32_t bits, a = ao[k];
            memcpy(&bits, &v, 4);  /* select by masks: no branch, so the loop vectorises */
            uint32_t b0 = bits & -(uint32_t)(a == 0), b1 = bits & -(uint32_t)(a == 1);
            uint32_t b2 = bits & -(uint32_t)(a == 2), b3 = bits & -(uint32_t)(a == 3);
            memcpy(q0 + k, &b0, 4);
            memcpy(q1 + k, &b1, 4);
            memcpy(q2 + k, &b2, 4);
            memcpy(q3 + k, &b3, 4);
        }
    }
}

CLONES static void
pool2_backward(const float *restrict g, const uint8_t *restrict arg, float *restrict gx, int64_t n,
               int64_t h, int64_t w, int64_t c) {
    int64_t ho = h / 2, wo = w / 2;
    for (int64_t b = 0; b < n; b++) {
        for (int64_t i = 0; i < ho; i++) {
            float *r0 = gx + (b * h + 2 * i) * w * c, *r1 = r0 + w * c;
            int64_t o = (b * ho + i) * wo * c;
            if (c == 6) unpool_row(g + o, arg + o, r0, r1, wo, 6);
            else if (c == 16) unpool_row(g + o, arg + o, r0, r1, wo, 16);
            else unpool_row(g + o, arg + o, r0, r1, wo, c);
            if (w > 2 * wo) {
                memset(r0 + 2 * wo * c, 0, c * sizeof(float));
                memset(r1 + 2 * wo * c, 0, c * sizeof(float));
            }
        }
        if (h > 2 * ho) memset(gx + (b * h + 2 * ho) * w * c, 0, w * c * sizeof(float));
    }
}


/* ---- convolution with one input channel per group ---- */

typedef float v8 __attribute__((vector_size(32)));
static inline v8 load8(const float *p) { v8 v; memcpy(&v, p, sizeof v); return v; }

/* Group g's input plane of one image, x (H, W, K), into buf (H, wp), zero-padded on the right. */
static void plane(const float *x, float *buf, int64_t h, int64_t w, int64_t wp, int64_t k, int64_t g) {
    for (int64_t r = 0; r < h; r++) {
        float *d = buf + r * wp;
        const float *s = x + r * w * k + g;
        if (k == 1) memcpy(d, s, w * sizeof(float));
        else for (int64_t c = 0; c < w; c++) d[c] = s[c * k];
        for (int64_t c = w; c < wp; c++) d[c] = 0.0f;
    }
}

#define MAXO 16  /* output channels per group the forward keeps in registers (py_conv checks) */
#define MAXKW 16 /* kernel columns the weight gradient keeps in registers (py_conv checks) */

static inline __attribute__((always_inline)) void
conv_row(const float *buf, int64_t wp, const float *wt, const float *bias, float *yrow, int64_t ow,
         int64_t co, int64_t o, int64_t kh, int64_t kw) {
    for (int64_t c0 = 0; c0 < ow; c0 += 8) {
        v8 acc[MAXO];
        for (int64_t q = 0; q < o; q++) acc[q] = (v8){0} + bias[q];
        for (int64_t i = 0; i < kh; i++)
            for (int64_t j = 0; j < kw; j++) {
                v8 xv = load8(buf + i * wp + c0 + j);
                for (int64_t q = 0; q < o; q++) acc[q] = acc[q] + wt[(q * kh + i) * kw + j] * xv;
            }
        int64_t n = ow - c0 < 8 ? ow - c0 : 8;
        for (int64_t l = 0; l < n; l++)
            for (int64_t q = 0; q < o; q++) yrow[(c0 + l) * co + q] = acc[q][l];
    }
}

/* x (N, H, W, K), weight (K*O, 1, KH, KW), bias (K*O) -> y (N, H-KH+1, W-KW+1, K*O). */
CLONES static int
conv_forward(const float *restrict x, const float *restrict wt, const float *restrict bias, float *restrict y,
             int64_t n, int64_t h, int64_t w, int64_t k, int64_t o, int64_t kh, int64_t kw) {
    int64_t oh = h - kh + 1, ow = w - kw + 1, wp = (ow + 7) / 8 * 8 + kw;
    float *buf = malloc(sizeof(float) * h * wp);
    if (!buf) return -1;
    for (int64_t b = 0; b < n; b++)
        for (int64_t g = 0; g < k; g++) {
            plane(x + b * h * w * k, buf, h, w, wp, k, g);
            for (int64_t r = 0; r < oh; r++) {
                float *yrow = y + (b * oh + r) * ow * k * o + g * o;
                const float *wg = wt + g * o * kh * kw, *bg = bias + g * o;
                if (o == 6 && kh == 5 && kw == 5) conv_row(buf + r * wp, wp, wg, bg, yrow, ow, k * o, 6, 5, 5);
                else conv_row(buf + r * wp, wp, wg, bg, yrow, ow, k * o, o, kh, kw);
            }
        }
    free(buf);
    return 0;
}

/* One image's share of the gradients: gt is its output gradient for the group as (O, OH, owp). */
static inline __attribute__((always_inline)) void
conv_grad_image(const float *buf, int64_t wp, const float *gt, int64_t owp, int64_t oh, v8 *accw, v8 *accb,
                int64_t o, int64_t kh, int64_t kw) {
    for (int64_t q = 0; q < o; q++) {
        v8 sb = accb[q];
        for (int64_t r = 0; r < oh; r++)
            for (int64_t c0 = 0; c0 < owp; c0 += 8) sb = sb + load8(gt + (q * oh + r) * owp + c0);
        accb[q] = sb;
        for (int64_t i = 0; i < kh; i++) {
            v8 a[MAXKW];
            for (int64_t j = 0; j < kw; j++) a[j] = accw[(q * kh + i) * kw + j];
            for (int64_t r = 0; r < oh; r++)
                for (int64_t c0 = 0; c0 < owp; c0 += 8) {
                    v8 gv = load8(gt + (q * oh + r) * owp + c0);
                    const float *xr = buf + (r + i) * wp + c0;
                    for (int64_t j = 0; j < kw; j++) a[j] = a[j] + gv * load8(xr + j);
                }
            for (int64_t j = 0; j < kw; j++) accw[(q * kh + i) * kw + j] = a[j];
        }
    }
}

/* The weight (K*O, 1, KH, KW) and bias (K*O) gradients of conv_forward from gy (N, OH, OW, K*O). */
CLONES static int
conv_backward(const float *restrict x, const float *restrict gy, float *restrict gw, float *restrict gb,
              int64_t n, int64_t h, int64_t w, int64_t k, int64_t o, int64_t kh, int64_t kw) {
    int64_t oh = h - kh + 1, ow = w - kw + 1, owp = (ow + 7) / 8 * 8, wp = owp + kw;
    float *buf = malloc(sizeof(float) * h * wp), *gt = malloc(sizeof(float) * o * oh * owp);
    v8 *accw = aligned_alloc(32, sizeof(v8) * o * kh * kw), *accb = aligned_alloc(32, sizeof(v8) * o);
    int failed = !buf || !gt || !accw || !accb;
    for (int64_t g = 0; g < k && !failed; g++) {
        for (int64_t t = 0; t < o * kh * kw; t++) accw[t] = (v8){0};
        for (int64_t q = 0; q < o; q++) accb[q] = (v8){0};
        for (int64_t b = 0; b < n; b++) {
            plane(x + b * h * w * k, buf, h, w, wp, k, g);
            const float *src = gy + b * oh * ow * k * o + g * o;
            for (int64_t r = 0; r < oh; r++)
                for (int64_t c = 0; c < owp; c++)
                    for (int64_t q = 0; q < o; q++)
                        gt[(q * oh + r) * owp + c] = c < ow ? src[(r * ow + c) * k * o + q] : 0.0f;
            if (o == 6 && kh == 5 && kw == 5) conv_grad_image(buf, wp, gt, owp, oh, accw, accb, 6, 5, 5);
            else conv_grad_image(buf, wp, gt, owp, oh, accw, accb, o, kh, kw);
        }
        for (int64_t q = 0; q < o; q++) {
            float s = 0.0f;
            for (int l = 0; l < 8; l++) s += accb[q][l];
            gb[g * o + q] = s;
            for (int64_t t = 0; t < kh * kw; t++) {
                float s2 = 0.0f;
                for (int l = 0; l < 8; l++) s2 += accw[q * kh * kw + t][l];
                gw[(g * o + q) * kh * kw + t] = s2;
            }
        }
    }
    free(buf); free(gt); free(accw); free(accb);
    return failed ? -1 : 0;
}

/* Python: pool2_forward(x, y, arg, n, h, w, c) and pool2_backward(g, arg, gx, n, h, w, c), the first
   three the tensors' data pointers (ints); the caller checks dtypes and layouts, this the sizes. */
static PyObject *
py_pool2(PyObject *self, PyObject *args, int backward) {
    unsigned long long p0, p1, p2;
    long long n, h, w, c;
    if (!PyArg_ParseTuple(args, "KKKLLLL", &p0, &p1, &p2, &n, &h, &w, &c)) return NULL;
    if (!p0 || !p1 || !p2) {
        PyErr_SetString(PyExc_ValueError, "pool kernel: a null data pointer");
        return NULL;
    }
    if (n < 1 || c < 1 || h < 2 || w < 2) {
        PyErr_Format(PyExc_ValueError, "pool kernel: needs a positive batch and channel count and an input of "
                     "at least 2 x 2, got n=%lld c=%lld h=%lld w=%lld", n, c, h, w);
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    if (backward)
        pool2_backward((const float *)(uintptr_t)p0, (const uint8_t *)(uintptr_t)p1, (float *)(uintptr_t)p2,
                       n, h, w, c);
    else
        pool2_forward((const float *)(uintptr_t)p0, (float *)(uintptr_t)p1, (uint8_t *)(uintptr_t)p2,
                      n, h, w, c);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

static PyObject *py_forward(PyObject *self, PyObject *args) { return py_pool2(self, args, 0); }
static PyObject *py_backward(PyObject *self, PyObject *args) { return py_pool2(self, args, 1); }


/* Python: conv_forward(x, weight, bias, y, n, h, w, k, o, kh, kw) and
   conv_backward(x, gy, gweight, gbias, n, h, w, k, o, kh, kw), the first four data pointers; the caller
   checks dtypes and layouts, this the sizes. */
static PyObject *
py_conv(PyObject *self, PyObject *args, int backward) {
    unsigned long long p0, p1, p2, p3;
    long long n, h, w, k, o, kh, kw;
    int rc;
    if (!PyArg_ParseTuple(args, "KKKKLLLLLLL", &p0, &p1, &p2, &p3, &n, &h, &w, &k, &o, &kh, &kw)) return NULL;
    if (!p0 || !p1 || !p2 || !p3) {
        PyErr_SetString(PyExc_ValueError, "conv kernel: a null data pointer");
        return NULL;
    }
    if (n < 1 || k < 1 || kh < 1 || kw < 1 || o < 1 || o > MAXO || kw > MAXKW || h < kh || w < kw) {
        PyErr_Format(PyExc_ValueError, "conv kernel: needs positive sizes, 1 to %d outputs per group, 1 to %d "
                     "kernel columns and an input at least the kernel's size, got n=%lld h=%lld w=%lld "
                     "groups=%lld outputs=%lld kernel=%lldx%lld", MAXO, MAXKW, n, h, w, k, o, kh, kw);
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    if (backward)
        rc = conv_backward((const float *)(uintptr_t)p0, (const float *)(uintptr_t)p1, (float *)(uintptr_t)p2,
                           (float *)(uintptr_t)p3, n, h, w, k, o, kh, kw);
    else
        rc = conv_forward((const float *)(uintptr_t)p0, (const float *)(uintptr_t)p1,
                          (const float *)(uintptr_t)p2, (float *)(uintptr_t)p3, n, h, w, k, o, kh, kw);
    Py_END_ALLOW_THREADS
    if (rc) return PyErr_NoMemory();
    Py_RETURN_NONE;
}

static PyObject *py_conv_forward(PyObject *self, PyObject *args) { return py_conv(self, args, 0); }
static PyObject *py_conv_backward(PyObject *self, PyObject *args) { return py_conv(self, args, 1); }

static PyMethodDef methods[] = {
    {"pool2_forward", py_forward, METH_VARARGS, "2x2 max pooling of a channels-last float32 batch."},
    {"pool2_backward", py_backward, METH_VARARGS, "Its input gradient."},
    {"conv_forward", py_conv_forward, METH_VARARGS, "A convolution with one input channel per group."},
    {"conv_backward", py_conv_backward, METH_VARARGS, "Its weight and bias gradients."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_kernels", NULL, -1, methods};

PyMODINIT_FUNC PyInit__kernels(void) { return PyModule_Create(&module); }
