/* The engine's compiled core: matching and the ensemble metrics of spec §4, at native speed.
 *
 * It computes exactly what the pure-Python path (matching.py, predictions.py) computes, bit
 * for bit: the same difflib.SequenceMatcher algorithm (no junk; the auto-junk heuristic only
 * where asked), the same floating-point operations in the same order, the same libm calls,
 * CPython's own rounding for round(x, 12) and its summation order for sum().
 *
 * Symbols are interned to integers; patterns live in flat int32 arrays (symbols, event ends)
 * with an inverted index symbol -> (pattern, occurrences). The knowledge base stays the
 * authority on frequencies and symbol statistics: a prediction is a two-step call, `match`
 * (candidates, alignment, recall threshold) and `Run.predictions` (given what the knowledge
 * base says about the survivors), so the Python glue is a constant number of calls.
 * `Run.predictions` writes the ranked predictions straight to the JSON msgspec would write for
 * the pure-Python path's dicts: no Python object per prediction, symbol or event list (most
 * records are stored and never read).
 *
 * Compiled with -ffp-contract=off and without -ffast-math: no fused or reordered arithmetic.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <math.h>
#include <stdint.h>
#include <string.h>

#define CORE_ABI 5

/* ------------------------------------------------------------------------------------------
 * Small growable arrays.
 */

typedef struct {
    int32_t *v;
    Py_ssize_t n, cap;
} IntVec;

static int
iv_reserve(IntVec *a, Py_ssize_t need)
{
    if (need <= a->cap) {
        return 0;
    }
    Py_ssize_t cap = a->cap ? a->cap : 16;
    while (cap < need) {
        cap *= 2;
    }
    int32_t *v = PyMem_Realloc(a->v, (size_t)cap * sizeof(int32_t));
    if (v == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    a->v = v;
    a->cap = cap;
    return 0;
}

static inline int
iv_push(IntVec *a, int32_t x)
{
    if (a->n == a->cap && iv_reserve(a, a->n + 1) < 0) {
        return -1;
    }
    a->v[a->n++] = x;
    return 0;
}

static void
iv_free(IntVec *a)
{
    PyMem_Free(a->v);
    a->v = NULL;
    a->n = a->cap = 0;
}

/* Grow a zero-filled array of `size` elements to at least `need` elements (new part zeroed). */
static int
grow_zeroed(void **array, Py_ssize_t *cap, Py_ssize_t need, size_t size)
{
    if (need <= *cap) {
        return 0;
    }
    Py_ssize_t n = *cap ? *cap : 64;
    while (n < need) {
        n *= 2;
    }
    char *v = PyMem_Realloc(*array, (size_t)n * size);
    if (v == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    memset(v + (size_t)*cap * size, 0, (size_t)(n - *cap) * size);
    *array = v;
    *cap = n;
    return 0;
}

/* ------------------------------------------------------------------------------------------
 * Python's arithmetic, reproduced exactly.
 */

static PyObject *py_round; /* builtins.round, for the rare values the fast path cannot do */

/* round(x, 12) exactly as CPython: the decimal nearest to x with 12 places (ties to even), then
 * the double nearest to that decimal. With r = that decimal times 1e12 (an integer below 2**53),
 * r / 1e12 is the correctly rounded double of r·10^-12, as strtod gives. r is found from the
 * exact product x·1e12 = y + err (fma gives err exactly). Large or non-finite x go to Python. */
static int
round12(double x, double *out)
{
    if (!isfinite(x)) {
        *out = x;
        return 0;
    }
    double y = x * 1e12;
    if (fabs(y) < 4503599627370496.0) { /* 2**52: y - r0 below is exact */
        double err = fma(x, 1e12, -y);
        double r = nearbyint(y);
        double t = y - r;
        if (t == 0.5) {
            if (err > 0.0) {
                r += 1.0;
            }
        }
        else if (t == -0.5) {
            if (err < 0.0) {
                r -= 1.0;
            }
        }
        *out = r / 1e12;
        return 0;
    }
    PyObject *value = PyFloat_FromDouble(x);
    if (value == NULL) {
        return -1;
    }
    PyObject *rounded = PyObject_CallFunction(py_round, "Oi", value, 12);
    Py_DECREF(value);
    if (rounded == NULL) {
        return -1;
    }
    *out = PyFloat_AsDouble(rounded);
    Py_DECREF(rounded);
    return (*out == -1.0 && PyErr_Occurred()) ? -1 : 0;
}

/* sum() of a list of floats, in order, as this CPython adds them (3.12 compensates). */
typedef struct {
    double f;
#if PY_VERSION_HEX >= 0x030C0000
    double c;
#endif
} PySum;

static inline void
ps_init(PySum *s)
{
    s->f = 0.0;
#if PY_VERSION_HEX >= 0x030C0000
    s->c = 0.0;
#endif
}

static inline void
ps_add(PySum *s, double x)
{
#if PY_VERSION_HEX >= 0x030C0000
    double t = s->f + x;
    if (fabs(s->f) >= fabs(x)) {
        s->c += (s->f - t) + x;
    }
    else {
        s->c += (x - t) + s->f;
    }
    s->f = t;
#else
    s->f += x;
#endif
}

static inline double
ps_result(const PySum *s)
{
#if PY_VERSION_HEX >= 0x030C0000
    if (s->c != 0.0 && isfinite(s->c)) {
        return s->f + s->c;
    }
#endif
    return s->f;
}

#define EXACT_INT 9007199254740992LL /* 2**53: below it int / int is a double division */

/* a / b for Python ints, as Python's true division; b != 0. */
static int
int_true_divide(long long a, long long b, double *out)
{
    if (llabs(a) <= EXACT_INT && llabs(b) <= EXACT_INT) {
        *out = (double)a / (double)b;
        return 0;
    }
    PyObject *pa = PyLong_FromLongLong(a), *pb = PyLong_FromLongLong(b), *q = NULL;
    if (pa != NULL && pb != NULL) {
        q = PyNumber_TrueDivide(pa, pb);
    }
    Py_XDECREF(pa);
    Py_XDECREF(pb);
    if (q == NULL) {
        return -1;
    }
    *out = PyFloat_AsDouble(q);
    Py_DECREF(q);
    return 0;
}

/* _e(q, n) of predictions.py: -q·ln(q)/ln(n) when q > 0 and n > 1, else 0. */
static inline double
spread_term(double q, long long n, double log_n)
{
    return (q > 0.0 && n > 1) ? -q * log(q) / log_n : 0.0;
}

/* ------------------------------------------------------------------------------------------
 * difflib.SequenceMatcher(None, a, b, autojunk) over interned symbols: matching blocks.
 *
 * `b` is indexed once (b2j, as positions per symbol) and matched against many `a`s. Symbols
 * are ids in [0, nsym); an id < 0 in `b` equals nothing in `a`.
 */

typedef struct {
    /* b and its index; b2j_start/b2j_len are indexed by symbol, zero for symbols not in b */
    const int32_t *b;
    Py_ssize_t lb;
    int32_t *b2j_start, *b2j_len;
    IntVec b2j_pos;
    IntVec b_symbols; /* distinct symbols of b, to reset b2j_len */
    /* j2len of find_longest_match: two generations, told apart by stamps */
    int32_t *len[2];
    uint32_t *st[2];
    Py_ssize_t len_cap;
    uint32_t stamp;
    /* get_matching_blocks: work queue and blocks, triples (i, j, k) */
    IntVec queue, blocks;
} Matcher;

static void
matcher_free(Matcher *m)
{
    for (int g = 0; g < 2; g++) {
        PyMem_Free(m->len[g]);
        PyMem_Free(m->st[g]);
        m->len[g] = NULL;
        m->st[g] = NULL;
    }
    m->len_cap = 0;
    iv_free(&m->b2j_pos);
    iv_free(&m->b_symbols);
    iv_free(&m->queue);
    iv_free(&m->blocks);
}

/* Index b; `b2j_start`/`b2j_len` must be zero for every symbol on entry (see matcher_unset_b). */
static int
matcher_set_b(Matcher *m, const int32_t *b, Py_ssize_t lb, int autojunk)
{
    m->b = b;
    m->lb = lb;
    m->b_symbols.n = 0;
    for (Py_ssize_t j = 0; j < lb; j++) {
        int32_t s = b[j];
        if (s < 0) {
            continue;
        }
        if (m->b2j_len[s]++ == 0 && iv_push(&m->b_symbols, s) < 0) {
            return -1;
        }
    }
    int32_t offset = 0;
    for (Py_ssize_t k = 0; k < m->b_symbols.n; k++) {
        int32_t s = m->b_symbols.v[k];
        m->b2j_start[s] = offset;
        offset += m->b2j_len[s];
        m->b2j_len[s] = 0; /* refilled below */
    }
    if (iv_reserve(&m->b2j_pos, lb) < 0) {
        return -1;
    }
    for (Py_ssize_t j = 0; j < lb; j++) {
        int32_t s = b[j];
        if (s >= 0) {
            m->b2j_pos.v[m->b2j_start[s] + m->b2j_len[s]++] = (int32_t)j;
        }
    }
    if (autojunk && lb >= 200) { /* difflib: "popular" elements are left out of b2j */
        Py_ssize_t ntest = lb / 100 + 1;
        for (Py_ssize_t k = 0; k < m->b_symbols.n; k++) {
            int32_t s = m->b_symbols.v[k];
            if (m->b2j_len[s] > ntest) {
                m->b2j_len[s] = 0;
            }
        }
    }
    if (lb > m->len_cap) {
        for (int g = 0; g < 2; g++) {
            int32_t *len = PyMem_Realloc(m->len[g], (size_t)lb * sizeof(int32_t));
            uint32_t *st = len ? PyMem_Realloc(m->st[g], (size_t)lb * sizeof(uint32_t)) : NULL;
            if (len) {
                m->len[g] = len;
            }
            if (st == NULL) {
                PyErr_NoMemory();
                return -1;
            }
            memset(st, 0, (size_t)lb * sizeof(uint32_t));
            m->st[g] = st;
        }
        m->len_cap = lb;
        m->stamp = 0;
    }
    return 0;
}

static void
matcher_unset_b(Matcher *m)
{
    for (Py_ssize_t k = 0; k < m->b_symbols.n; k++) {
        int32_t s = m->b_symbols.v[k];
        m->b2j_len[s] = 0;
        m->b2j_start[s] = 0;
    }
    m->b_symbols.n = 0;
}

/* Stamps for the `ahead` generations of one find_longest_match call; they never wrap midway. */
static inline void
reserve_stamps(Matcher *m, Py_ssize_t ahead)
{
    if ((uint64_t)m->stamp + (uint64_t)ahead + 2 >= UINT32_MAX) { /* forget every stamp */
        for (int g = 0; g < 2; g++) {
            memset(m->st[g], 0, (size_t)m->len_cap * sizeof(uint32_t));
        }
        m->stamp = 0;
    }
}

/* difflib's find_longest_match(alo, ahi, blo, bhi) with no junk function. */
static void
find_longest_match(Matcher *m, const int32_t *a, Py_ssize_t alo, Py_ssize_t ahi,
                   Py_ssize_t blo, Py_ssize_t bhi, Py_ssize_t *oi, Py_ssize_t *oj,
                   Py_ssize_t *ok)
{
    const int32_t *b = m->b;
    Py_ssize_t besti = alo, bestj = blo, bestsize = 0;
    int cur = 0;
    reserve_stamps(m, ahi - alo);
    uint32_t prev_stamp = ++m->stamp;
    for (Py_ssize_t i = alo; i < ahi; i++) {
        uint32_t cur_stamp = ++m->stamp;
        int32_t s = a[i];
        int32_t count = m->b2j_len[s];
        const int32_t *pos = m->b2j_pos.v + m->b2j_start[s];
        int32_t *len_cur = m->len[cur], *len_prev = m->len[cur ^ 1];
        uint32_t *st_cur = m->st[cur], *st_prev = m->st[cur ^ 1];
        for (int32_t t = 0; t < count; t++) {
            Py_ssize_t j = pos[t];
            if (j < blo) {
                continue;
            }
            if (j >= bhi) {
                break;
            }
            int32_t k = (j > 0 && st_prev[j - 1] == prev_stamp) ? len_prev[j - 1] + 1 : 1;
            len_cur[j] = k;
            st_cur[j] = cur_stamp;
            if (k > bestsize) {
                besti = i - k + 1;
                bestj = j - k + 1;
                bestsize = k;
            }
        }
        cur ^= 1;
        prev_stamp = cur_stamp;
    }
    /* difflib extends over equal elements the index left out (popular ones); no junk here */
    while (besti > alo && bestj > blo && a[besti - 1] == b[bestj - 1]) {
        besti--;
        bestj--;
        bestsize++;
    }
    while (besti + bestsize < ahi && bestj + bestsize < bhi &&
           a[besti + bestsize] == b[bestj + bestsize]) {
        bestsize++;
    }
    *oi = besti;
    *oj = bestj;
    *ok = bestsize;
}

/* get_matching_blocks() without the sentinel into m->blocks; returns the block count or -1. */
static Py_ssize_t
matching_blocks(Matcher *m, const int32_t *a, Py_ssize_t la)
{
    IntVec *q = &m->queue, *out = &m->blocks;
    q->n = 0;
    out->n = 0;
    if (iv_reserve(q, 4) < 0) {
        return -1;
    }
    q->v[0] = 0;
    q->v[1] = (int32_t)la;
    q->v[2] = 0;
    q->v[3] = (int32_t)m->lb;
    q->n = 4;
    while (q->n) {
        q->n -= 4;
        Py_ssize_t alo = q->v[q->n], ahi = q->v[q->n + 1], blo = q->v[q->n + 2],
                   bhi = q->v[q->n + 3];
        Py_ssize_t i, j, k;
        find_longest_match(m, a, alo, ahi, blo, bhi, &i, &j, &k);
        if (!k) {
            continue;
        }
        if (iv_reserve(out, out->n + 3) < 0 || iv_reserve(q, q->n + 8) < 0) {
            return -1;
        }
        out->v[out->n++] = (int32_t)i;
        out->v[out->n++] = (int32_t)j;
        out->v[out->n++] = (int32_t)k;
        if (alo < i && blo < j) {
            int32_t *e = q->v + q->n;
            e[0] = (int32_t)alo;
            e[1] = (int32_t)i;
            e[2] = (int32_t)blo;
            e[3] = (int32_t)j;
            q->n += 4;
        }
        if (i + k < ahi && j + k < bhi) {
            int32_t *e = q->v + q->n;
            e[0] = (int32_t)(i + k);
            e[1] = (int32_t)ahi;
            e[2] = (int32_t)(j + k);
            e[3] = (int32_t)bhi;
            q->n += 4;
        }
    }
    /* sort by i (blocks never overlap), then merge adjacent ones */
    Py_ssize_t n = out->n / 3;
    int32_t *v = out->v;
    for (Py_ssize_t x = 1; x < n; x++) {
        int32_t bi = v[3 * x], bj = v[3 * x + 1], bk = v[3 * x + 2];
        Py_ssize_t y = x - 1;
        while (y >= 0 && v[3 * y] > bi) {
            v[3 * y + 3] = v[3 * y];
            v[3 * y + 4] = v[3 * y + 1];
            v[3 * y + 5] = v[3 * y + 2];
            y--;
        }
        v[3 * y + 3] = bi;
        v[3 * y + 4] = bj;
        v[3 * y + 5] = bk;
    }
    Py_ssize_t kept = 0;
    int32_t i1 = 0, j1 = 0, k1 = 0;
    for (Py_ssize_t x = 0; x < n; x++) {
        int32_t i2 = v[3 * x], j2 = v[3 * x + 1], k2 = v[3 * x + 2];
        if (i1 + k1 == i2 && j1 + k1 == j2) {
            k1 += k2;
        }
        else {
            if (k1) {
                v[3 * kept] = i1;
                v[3 * kept + 1] = j1;
                v[3 * kept + 2] = k1;
                kept++;
            }
            i1 = i2;
            j1 = j2;
            k1 = k2;
        }
    }
    if (k1) {
        v[3 * kept] = i1;
        v[3 * kept + 1] = j1;
        v[3 * kept + 2] = k1;
        kept++;
    }
    out->n = 3 * kept;
    return kept;
}

/* ------------------------------------------------------------------------------------------
 * Module-level functions with difflib's own signature, for tests: any hashable elements.
 */

/* Intern two sequences' elements to ids (arrays from PyMem); returns the symbol count. */
static Py_ssize_t
intern_pair(PyObject *a, PyObject *b, int32_t **pa, Py_ssize_t *la, int32_t **pb,
            Py_ssize_t *lb)
{
    PyObject *ids = PyDict_New();
    PyObject *seqs[2] = {NULL, NULL};
    Py_ssize_t nsym = -1;
    *pa = *pb = NULL;
    if (ids == NULL) {
        return -1;
    }
    seqs[0] = PySequence_Fast(a, "a must be a sequence");
    seqs[1] = seqs[0] ? PySequence_Fast(b, "b must be a sequence") : NULL;
    if (seqs[1] == NULL) {
        goto done;
    }
    int32_t **outs[2] = {pa, pb};
    Py_ssize_t *lens[2] = {la, lb};
    for (int w = 0; w < 2; w++) {
        Py_ssize_t n = PySequence_Fast_GET_SIZE(seqs[w]);
        *lens[w] = n;
        *outs[w] = PyMem_Malloc((size_t)(n ? n : 1) * sizeof(int32_t));
        if (*outs[w] == NULL) {
            PyErr_NoMemory();
            goto done;
        }
        for (Py_ssize_t x = 0; x < n; x++) {
            PyObject *item = PySequence_Fast_GET_ITEM(seqs[w], x);
            PyObject *id = PyDict_GetItemWithError(ids, item);
            if (id == NULL) {
                if (PyErr_Occurred()) {
                    goto done;
                }
                id = PyLong_FromSsize_t(PyDict_GET_SIZE(ids));
                if (id == NULL || PyDict_SetItem(ids, item, id) < 0) {
                    Py_XDECREF(id);
                    goto done;
                }
                Py_DECREF(id);
            }
            (*outs[w])[x] = (int32_t)PyLong_AsLong(id);
        }
    }
    nsym = PyDict_GET_SIZE(ids);
done:
    Py_DECREF(ids);
    Py_XDECREF(seqs[0]);
    Py_XDECREF(seqs[1]);
    if (nsym < 0) {
        PyMem_Free(*pa);
        PyMem_Free(*pb);
        *pa = *pb = NULL;
    }
    return nsym;
}

/* Blocks of (a, b) with the sentinel, as a new list of (i, j, n) tuples; NULL on error. */
static PyObject *
blocks_of(PyObject *a, PyObject *b, int autojunk)
{
    int32_t *ia, *ib;
    Py_ssize_t la, lb;
    Py_ssize_t nsym = intern_pair(a, b, &ia, &la, &ib, &lb);
    if (nsym < 0) {
        return NULL;
    }
    PyObject *result = NULL;
    Matcher m = {0};
    m.b2j_start = PyMem_Calloc((size_t)(nsym ? nsym : 1), sizeof(int32_t));
    m.b2j_len = PyMem_Calloc((size_t)(nsym ? nsym : 1), sizeof(int32_t));
    if (m.b2j_start == NULL || m.b2j_len == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    if (matcher_set_b(&m, ib, lb, autojunk) < 0) {
        goto done;
    }
    Py_ssize_t n = matching_blocks(&m, ia, la);
    if (n < 0) {
        goto done;
    }
    result = PyList_New(n + 1);
    if (result == NULL) {
        goto done;
    }
    for (Py_ssize_t x = 0; x <= n; x++) {
        PyObject *t = x < n ? Py_BuildValue("(iii)", m.blocks.v[3 * x], m.blocks.v[3 * x + 1],
                                            m.blocks.v[3 * x + 2])
                            : Py_BuildValue("(nni)", la, lb, 0);
        if (t == NULL) {
            Py_CLEAR(result);
            goto done;
        }
        PyList_SET_ITEM(result, x, t);
    }
done:
    matcher_free(&m);
    PyMem_Free(m.b2j_start);
    PyMem_Free(m.b2j_len);
    PyMem_Free(ia);
    PyMem_Free(ib);
    return result;
}

static PyObject *
core_get_matching_blocks(PyObject *Py_UNUSED(module), PyObject *args, PyObject *kwargs)
{
    static char *names[] = {"a", "b", "autojunk", NULL};
    PyObject *a, *b;
    int autojunk = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO|p", names, &a, &b, &autojunk)) {
        return NULL;
    }
    return blocks_of(a, b, autojunk);
}

static PyObject *
core_get_opcodes(PyObject *Py_UNUSED(module), PyObject *args, PyObject *kwargs)
{
    static char *names[] = {"a", "b", "autojunk", NULL};
    PyObject *a, *b;
    int autojunk = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO|p", names, &a, &b, &autojunk)) {
        return NULL;
    }
    PyObject *blocks = blocks_of(a, b, autojunk);
    if (blocks == NULL) {
        return NULL;
    }
    PyObject *answer = PyList_New(0);
    Py_ssize_t i = 0, j = 0;
    for (Py_ssize_t x = 0; answer != NULL && x < PyList_GET_SIZE(blocks); x++) {
        Py_ssize_t ai, bj, size;
        if (!PyArg_ParseTuple(PyList_GET_ITEM(blocks, x), "nnn", &ai, &bj, &size)) {
            Py_CLEAR(answer);
            break;
        }
        const char *tag = NULL;
        if (i < ai && j < bj) {
            tag = "replace";
        }
        else if (i < ai) {
            tag = "delete";
        }
        else if (j < bj) {
            tag = "insert";
        }
        PyObject *op = tag ? Py_BuildValue("(snnnn)", tag, i, ai, j, bj) : NULL;
        if (tag && (op == NULL || PyList_Append(answer, op) < 0)) {
            Py_XDECREF(op);
            Py_CLEAR(answer);
            break;
        }
        Py_XDECREF(op);
        i = ai + size;
        j = bj + size;
        if (size) {
            op = Py_BuildValue("(snnnn)", "equal", ai, i, bj, j);
            if (op == NULL || PyList_Append(answer, op) < 0) {
                Py_XDECREF(op);
                Py_CLEAR(answer);
                break;
            }
            Py_DECREF(op);
        }
    }
    Py_DECREF(blocks);
    return answer;
}

/* ------------------------------------------------------------------------------------------
 * Compact JSON, byte for byte what msgspec.json encodes for the same Python values: strings
 * as UTF-8 with only '"', '\\' and control characters escaped (\b \t \n \f \r, else \u00xx),
 * floats as the shortest repr that round-trips (msgspec's layout: fixed from 1e-5 up to 1e16,
 * else "1.5e-7" / "1e16"), non-finite floats as null.
 */

typedef struct {
    char *v;
    Py_ssize_t n, cap;
} Buf;

static int
buf_reserve(Buf *b, Py_ssize_t extra)
{
    if (b->n + extra <= b->cap) {
        return 0;
    }
    Py_ssize_t cap = b->cap ? b->cap : 4096;
    while (cap < b->n + extra) {
        cap *= 2;
    }
    char *v = PyMem_Realloc(b->v, (size_t)cap);
    if (v == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    b->v = v;
    b->cap = cap;
    return 0;
}

static inline int
buf_put(Buf *b, const char *s, Py_ssize_t len)
{
    if (buf_reserve(b, len) < 0) {
        return -1;
    }
    memcpy(b->v + b->n, s, (size_t)len);
    b->n += len;
    return 0;
}

#define BUF_LIT(b, s) buf_put((b), (s), (Py_ssize_t)(sizeof(s) - 1))

static inline int
buf_ch(Buf *b, char c)
{
    if (b->n == b->cap && buf_reserve(b, 1) < 0) {
        return -1;
    }
    b->v[b->n++] = c;
    return 0;
}

static void
buf_free(Buf *b)
{
    PyMem_Free(b->v);
    b->v = NULL;
    b->n = b->cap = 0;
}

/* A JSON string of `len` UTF-8 bytes. */
static int
json_utf8(Buf *b, const char *s, Py_ssize_t len)
{
    static const char hex[] = "0123456789abcdef";
    if (buf_reserve(b, 6 * len + 2) < 0) {
        return -1;
    }
    char *o = b->v + b->n;
    *o++ = '"';
    for (Py_ssize_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\') {
            *o++ = (char)c;
            continue;
        }
        *o++ = '\\';
        switch (c) {
        case '"':
        case '\\':
            *o++ = (char)c;
            break;
        case '\b':
            *o++ = 'b';
            break;
        case '\t':
            *o++ = 't';
            break;
        case '\n':
            *o++ = 'n';
            break;
        case '\f':
            *o++ = 'f';
            break;
        case '\r':
            *o++ = 'r';
            break;
        default:
            *o++ = 'u';
            *o++ = '0';
            *o++ = '0';
            *o++ = hex[c >> 4];
            *o++ = hex[c & 15];
        }
    }
    *o++ = '"';
    b->n = o - b->v;
    return 0;
}

/* A str as a JSON string (UnicodeEncodeError for lone surrogates, as msgspec raises). */
static int
json_str(Buf *b, PyObject *s)
{
    if (!PyUnicode_Check(s)) {
        PyErr_Format(PyExc_TypeError, "expected a str, got %.100s", Py_TYPE(s)->tp_name);
        return -1;
    }
    Py_ssize_t len;
    const char *u = PyUnicode_AsUTF8AndSize(s, &len);
    return u == NULL ? -1 : json_utf8(b, u, len);
}

/* x = r / 1e12 (|x| < 4096, r an integer): r·10^-12 is then x's shortest repr. Any other
 * decimal that reads back as x lies within an ulp (< 10^-12 here) of it, so has more than 12
 * places and more digits. Most floats of a prediction are round(.., 12)s: no dtoa for them. */
static int
json_decimal12(Buf *b, double x, double r)
{
    char tmp[40], *o = tmp;
    if (signbit(x)) {
        *o++ = '-';
    }
    uint64_t u = (uint64_t)fabs(r);
    if (u >= 10000000u || u == 0) { /* |x| >= 1e-5: fixed, as msgspec */
        uint64_t ip = u / 1000000000000u, fp = u % 1000000000000u;
        char digits[24];
        int n = 0;
        do {
            digits[n++] = (char)('0' + ip % 10);
            ip /= 10;
        } while (ip);
        while (n) {
            *o++ = digits[--n];
        }
        *o++ = '.';
        if (fp == 0) {
            *o++ = '0';
        }
        else {
            char f[12];
            for (int i = 11; i >= 0; i--) {
                f[i] = (char)('0' + fp % 10);
                fp /= 10;
            }
            int k = 12;
            while (f[k - 1] == '0') {
                k--;
            }
            memcpy(o, f, (size_t)k);
            o += k;
        }
    }
    else { /* 1e-12 <= |x| < 1e-5: d.ddde-N */
        char digits[8];
        int n = 0;
        while (u) {
            digits[n++] = (char)('0' + u % 10);
            u /= 10;
        }
        int exponent = n - 1 - 12, first = 0;
        while (digits[first] == '0') { /* trailing zeros (digits are reversed) */
            first++;
        }
        *o++ = digits[n - 1];
        if (n - 1 > first) {
            *o++ = '.';
            for (int i = n - 2; i >= first; i--) {
                *o++ = digits[i];
            }
        }
        o += PyOS_snprintf(o, 8, "e%d", exponent);
    }
    return buf_put(b, tmp, o - tmp);
}

/* dtoa's shortest repr is exact but slow (~1 us); the other floats of a prediction (ratios of
 * small counts) repeat, so their text is remembered (the GIL serialises every caller). */
#define FLOAT_CACHE 1024
static struct {
    uint64_t bits;
    uint8_t len; /* 0: empty */
    char text[31];
} float_cache[FLOAT_CACHE];

static int
json_float(Buf *b, double x)
{
    if (!isfinite(x)) {
        return BUF_LIT(b, "null");
    }
    if (fabs(x) < 4096.0) {
        double r = nearbyint(x * 1e12);
        if (r / 1e12 == x) {
            return json_decimal12(b, x, r);
        }
    }
    uint64_t bits;
    memcpy(&bits, &x, sizeof(bits));
    size_t slot = (size_t)((bits * 0x9E3779B97F4A7C15u) >> 54);
    if (float_cache[slot].len && float_cache[slot].bits == bits) {
        return buf_put(b, float_cache[slot].text, float_cache[slot].len);
    }
    char *r = PyOS_double_to_string(x, 'r', 0, Py_DTSF_ADD_DOT_0, NULL);
    if (r == NULL) {
        return -1;
    }
    char text[40], *o = text;
    char *e = strchr(r, 'e');
    if (e == NULL) { /* repr's fixed layout (1e-4 <= |x| < 1e16) is msgspec's */
        size_t n = strlen(r);
        memcpy(o, r, n < 39 ? n : 39);
        o += n < 39 ? n : 39;
    }
    else {
        int exponent = atoi(e + 1);
        const char *m = r;
        if (*m == '-') {
            *o++ = *m++;
        }
        if (exponent == -5) { /* 1.25e-05 -> 0.0000125 */
            memcpy(o, "0.0000", 6);
            o += 6;
            for (; m < e && o < text + 38; m++) {
                if (*m != '.') {
                    *o++ = *m;
                }
            }
        }
        else { /* 1.5e-07 -> 1.5e-7, 1e+16 -> 1e16 */
            for (; m < e && o < text + 30; m++) {
                *o++ = *m;
            }
            o += PyOS_snprintf(o, 8, "e%d", exponent);
        }
    }
    PyMem_Free(r);
    Py_ssize_t len = o - text;
    if (len < (Py_ssize_t)sizeof(float_cache[slot].text)) {
        float_cache[slot].bits = bits;
        float_cache[slot].len = (uint8_t)len;
        memcpy(float_cache[slot].text, text, (size_t)len);
    }
    return buf_put(b, text, len);
}

static int
json_int(Buf *b, long long x)
{
    char s[32];
    int n = PyOS_snprintf(s, sizeof(s), "%lld", x);
    return buf_put(b, s, n);
}

PyDoc_STRVAR(core_json_doc,
             "json(value) -> bytes\n\n"
             "A str, float or int (or a list of them) as the prediction writer writes it,\n"
             "which is what msgspec.json encodes; for the tests.");

static int
json_value(Buf *b, PyObject *value)
{
    if (PyUnicode_Check(value)) {
        return json_str(b, value);
    }
    if (PyFloat_Check(value)) {
        return json_float(b, PyFloat_AS_DOUBLE(value));
    }
    if (PyLong_CheckExact(value)) {
        long long x = PyLong_AsLongLong(value);
        return (x == -1 && PyErr_Occurred()) ? -1 : json_int(b, x);
    }
    if (PyList_Check(value)) {
        if (buf_ch(b, '[') < 0) {
            return -1;
        }
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(value); i++) {
            if ((i && buf_ch(b, ',') < 0) || json_value(b, PyList_GET_ITEM(value, i)) < 0) {
                return -1;
            }
        }
        return buf_ch(b, ']');
    }
    PyErr_Format(PyExc_TypeError, "json() takes str, float, int or list, not %.100s",
                 Py_TYPE(value)->tp_name);
    return -1;
}

static PyObject *
core_json(PyObject *Py_UNUSED(module), PyObject *value)
{
    Buf b = {0};
    PyObject *out = json_value(&b, value) < 0 ? NULL : PyBytes_FromStringAndSize(b.v, b.n);
    buf_free(&b);
    return out;
}

/* ------------------------------------------------------------------------------------------
 * Core: the learned patterns, interned, and the inverted index.
 */

typedef struct {
    int32_t *pat, *cnt;
    int32_t n, cap;
} Postings;

typedef struct {
    PyObject_HEAD
    /* symbols */
    PyObject *ids;      /* dict: symbol str -> int id */
    PyObject **symbols; /* id -> str (owned) */
    Py_ssize_t nsym, sym_cap;
    Postings *postings; /* id -> patterns holding it */
    /* patterns: names, flat symbols, cumulative event ends (relative to the pattern) */
    PyObject *by_name; /* dict: name -> int index (a known name is not added twice) */
    PyObject **names;
    Py_ssize_t npat, pat_cap;
    IntVec flat_off, flat; /* pattern p: flat[flat_off[p] : flat_off[p+1]] */
    IntVec ev_off, ev_end; /* pattern p: event ends ev_end[ev_off[p] : ev_off[p+1]] */
    uint64_t generation;   /* bumped by clear(): a Run of an older generation is stale */
    /* scratch, by symbol (zero between calls) */
    int32_t *s_count, *s_seen;
    double *s_prob, *s_surprisal, *s_spread, *s_logp, *s_u;
    Py_ssize_t s_cap[7];
    /* scratch, by pattern (zero between calls) */
    int32_t *p_bound;
    Py_ssize_t p_cap;
    Matcher matcher;
    Py_ssize_t m_cap; /* matcher.b2j_start/b2j_len capacity */
    /* JSON: every symbol's escaped string, written once (sj_off: offset + 1, 0: not yet) */
    Buf sj;
    Py_ssize_t *sj_off, *sj_len;
    Py_ssize_t sj_cap[2];
    /* JSON: every predicted pattern's events "[..],[..]" written once (pj_off: offset + 1, 0:
     * not yet) and where each event starts in it (pattern p's at pj_pos[ev_off[p] + p]...) */
    Buf pj;
    Py_ssize_t *pj_off;
    int32_t *pj_pos;
    Py_ssize_t pj_cap[2];
    Buf out; /* the predictions being written (kept: no regrowth per call) */
} Core;

static PyTypeObject CoreType;
static PyTypeObject RunType;

static PyObject *
Core_new(PyTypeObject *type, PyObject *Py_UNUSED(args), PyObject *Py_UNUSED(kwargs))
{
    Core *self = (Core *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->ids = PyDict_New();
    self->by_name = PyDict_New();
    if (self->ids == NULL || self->by_name == NULL || iv_push(&self->flat_off, 0) < 0 ||
        iv_push(&self->ev_off, 0) < 0) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

static void
core_forget(Core *self)
{
    for (Py_ssize_t s = 0; s < self->nsym; s++) {
        Py_CLEAR(self->symbols[s]);
        PyMem_Free(self->postings[s].pat);
        PyMem_Free(self->postings[s].cnt);
        self->postings[s].pat = self->postings[s].cnt = NULL;
        self->postings[s].n = self->postings[s].cap = 0;
    }
    for (Py_ssize_t p = 0; p < self->npat; p++) {
        Py_CLEAR(self->names[p]);
    }
    if (self->sj_off != NULL) {
        memset(self->sj_off, 0, (size_t)self->sj_cap[0] * sizeof(Py_ssize_t));
    }
    if (self->pj_off != NULL) {
        memset(self->pj_off, 0, (size_t)self->pj_cap[0] * sizeof(Py_ssize_t));
    }
    self->sj.n = 0;
    self->pj.n = 0;
    self->nsym = 0;
    self->npat = 0;
    self->flat.n = 0;
    self->flat_off.n = 1;
    self->ev_end.n = 0;
    self->ev_off.n = 1;
    self->generation++;
}

static void
Core_dealloc(Core *self)
{
    core_forget(self);
    Py_XDECREF(self->ids);
    Py_XDECREF(self->by_name);
    PyMem_Free(self->symbols);
    PyMem_Free(self->postings);
    PyMem_Free(self->names);
    PyMem_Free(self->sj_off);
    PyMem_Free(self->sj_len);
    buf_free(&self->sj);
    PyMem_Free(self->pj_off);
    PyMem_Free(self->pj_pos);
    buf_free(&self->pj);
    buf_free(&self->out);
    iv_free(&self->flat_off);
    iv_free(&self->flat);
    iv_free(&self->ev_off);
    iv_free(&self->ev_end);
    PyMem_Free(self->s_count);
    PyMem_Free(self->s_seen);
    PyMem_Free(self->s_prob);
    PyMem_Free(self->s_surprisal);
    PyMem_Free(self->s_spread);
    PyMem_Free(self->s_logp);
    PyMem_Free(self->s_u);
    PyMem_Free(self->p_bound);
    PyMem_Free(self->matcher.b2j_start);
    PyMem_Free(self->matcher.b2j_len);
    matcher_free(&self->matcher);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Make every by-symbol scratch array hold `nsym` entries. */
static int
core_fit_symbols(Core *self, Py_ssize_t nsym)
{
    if (grow_zeroed((void **)&self->s_count, &self->s_cap[0], nsym, sizeof(int32_t)) < 0 ||
        grow_zeroed((void **)&self->s_seen, &self->s_cap[1], nsym, sizeof(int32_t)) < 0 ||
        grow_zeroed((void **)&self->s_prob, &self->s_cap[2], nsym, sizeof(double)) < 0 ||
        grow_zeroed((void **)&self->s_surprisal, &self->s_cap[3], nsym, sizeof(double)) < 0 ||
        grow_zeroed((void **)&self->s_spread, &self->s_cap[4], nsym, sizeof(double)) < 0 ||
        grow_zeroed((void **)&self->s_logp, &self->s_cap[5], nsym, sizeof(double)) < 0 ||
        grow_zeroed((void **)&self->s_u, &self->s_cap[6], nsym, sizeof(double)) < 0) {
        return -1;
    }
    Py_ssize_t cap = self->m_cap;
    if (grow_zeroed((void **)&self->matcher.b2j_start, &cap, nsym, sizeof(int32_t)) < 0) {
        return -1;
    }
    cap = self->m_cap;
    if (grow_zeroed((void **)&self->matcher.b2j_len, &cap, nsym, sizeof(int32_t)) < 0) {
        return -1;
    }
    self->m_cap = cap;
    return 0;
}

/* The id of a symbol, interning it; -1 with an exception on error. */
static int32_t
core_intern(Core *self, PyObject *symbol)
{
    if (!PyUnicode_Check(symbol)) {
        PyErr_Format(PyExc_TypeError, "symbols are str, not %.100s", Py_TYPE(symbol)->tp_name);
        return -1;
    }
    PyObject *id = PyDict_GetItemWithError(self->ids, symbol);
    if (id != NULL) {
        return (int32_t)PyLong_AsLong(id);
    }
    if (PyErr_Occurred()) {
        return -1;
    }
    if (self->nsym >= INT32_MAX) {
        PyErr_SetString(PyExc_OverflowError, "too many symbols");
        return -1;
    }
    if (self->nsym == self->sym_cap) {
        Py_ssize_t cap = self->sym_cap ? 2 * self->sym_cap : 256;
        PyObject **symbols = PyMem_Realloc(self->symbols, (size_t)cap * sizeof(PyObject *));
        if (symbols == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        self->symbols = symbols;
        Postings *postings = PyMem_Realloc(self->postings, (size_t)cap * sizeof(Postings));
        if (postings == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        memset(postings + self->sym_cap, 0, (size_t)(cap - self->sym_cap) * sizeof(Postings));
        self->postings = postings;
        self->sym_cap = cap;
    }
    if (core_fit_symbols(self, self->nsym + 1) < 0) {
        return -1;
    }
    id = PyLong_FromSsize_t(self->nsym);
    if (id == NULL || PyDict_SetItem(self->ids, symbol, id) < 0) {
        Py_XDECREF(id);
        return -1;
    }
    Py_DECREF(id);
    Py_INCREF(symbol);
    self->symbols[self->nsym] = symbol;
    return (int32_t)self->nsym++;
}

static int
postings_add(Postings *p, int32_t pattern, int32_t count)
{
    if (p->n == p->cap) {
        int32_t cap = p->cap ? 2 * p->cap : 4;
        int32_t *pat = PyMem_Realloc(p->pat, (size_t)cap * sizeof(int32_t));
        if (pat == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        p->pat = pat;
        int32_t *cnt = PyMem_Realloc(p->cnt, (size_t)cap * sizeof(int32_t));
        if (cnt == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        p->cnt = cnt;
        p->cap = cap;
    }
    p->pat[p->n] = pattern;
    p->cnt[p->n] = count;
    p->n++;
    return 0;
}

PyDoc_STRVAR(Core_add_doc, "add(name, events) -> bool\n\n"
                           "Index a pattern; False (and nothing changes) when the name is known.");

static PyObject *
Core_add(Core *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "add() takes 2 arguments (%zd given)", nargs);
        return NULL;
    }
    PyObject *name = args[0], *events = args[1];
    if (!PyUnicode_Check(name)) {
        PyErr_Format(PyExc_TypeError, "add() name must be str, not %.100s",
                     Py_TYPE(name)->tp_name);
        return NULL;
    }
    int known = PyDict_Contains(self->by_name, name);
    if (known < 0) {
        return NULL;
    }
    if (known) {
        Py_RETURN_FALSE;
    }
    if (self->npat >= INT32_MAX - 1) {
        PyErr_SetString(PyExc_OverflowError, "too many patterns");
        return NULL;
    }
    PyObject *seq = PySequence_Fast(events, "events must be a sequence of sequences");
    if (seq == NULL) {
        return NULL;
    }
    Py_ssize_t flat_start = self->flat.n, ev_start = self->ev_end.n;
    Py_ssize_t nev = PySequence_Fast_GET_SIZE(seq);
    for (Py_ssize_t e = 0; e < nev; e++) {
        PyObject *event = PySequence_Fast(PySequence_Fast_GET_ITEM(seq, e),
                                          "events must be a sequence of sequences");
        if (event == NULL) {
            goto fail;
        }
        for (Py_ssize_t x = 0; x < PySequence_Fast_GET_SIZE(event); x++) {
            int32_t id = core_intern(self, PySequence_Fast_GET_ITEM(event, x));
            if (id < 0 || iv_push(&self->flat, id) < 0) {
                Py_DECREF(event);
                goto fail;
            }
        }
        Py_DECREF(event);
        if (self->flat.n - flat_start > INT32_MAX ||
            iv_push(&self->ev_end, (int32_t)(self->flat.n - flat_start)) < 0) {
            goto fail;
        }
    }
    if (self->npat == self->pat_cap) {
        Py_ssize_t cap = self->pat_cap ? 2 * self->pat_cap : 256;
        PyObject **names = PyMem_Realloc(self->names, (size_t)cap * sizeof(PyObject *));
        if (names == NULL) {
            PyErr_NoMemory();
            goto fail;
        }
        self->names = names;
        self->pat_cap = cap;
    }
    if (grow_zeroed((void **)&self->p_bound, &self->p_cap, self->npat + 1, sizeof(int32_t)) <
            0 ||
        iv_push(&self->flat_off, (int32_t)self->flat.n) < 0 ||
        iv_push(&self->ev_off, (int32_t)self->ev_end.n) < 0) {
        goto fail;
    }
    int32_t pattern = (int32_t)self->npat;
    PyObject *index = PyLong_FromLong(pattern);
    if (index == NULL || PyDict_SetItem(self->by_name, name, index) < 0) {
        Py_XDECREF(index);
        self->flat_off.n--;
        self->ev_off.n--;
        goto fail;
    }
    Py_DECREF(index);
    Py_INCREF(name);
    self->names[self->npat++] = name;
    /* postings: occurrences of each distinct symbol, in first-seen order */
    int32_t *count = self->s_count;
    for (Py_ssize_t x = flat_start; x < self->flat.n; x++) {
        count[self->flat.v[x]]++;
    }
    int failed = 0;
    for (Py_ssize_t x = flat_start; x < self->flat.n; x++) {
        int32_t s = self->flat.v[x];
        if (count[s]) {
            if (!failed && postings_add(&self->postings[s], pattern, count[s]) < 0) {
                failed = 1;
            }
            count[s] = 0;
        }
    }
    Py_DECREF(seq);
    if (failed) {
        return NULL; /* out of memory */
    }
    Py_RETURN_TRUE;
fail:
    self->flat.n = flat_start;
    self->ev_end.n = ev_start;
    Py_DECREF(seq);
    return NULL;
}

static PyObject *
Core_clear(Core *self, PyObject *Py_UNUSED(ignored))
{
    core_forget(self);
    PyDict_Clear(self->ids);
    PyDict_Clear(self->by_name);
    Py_RETURN_NONE;
}

static Py_ssize_t
Core_len(Core *self)
{
    return self->npat;
}

/* ------------------------------------------------------------------------------------------
 * Run: the surviving candidates of one state, waiting for the knowledge base's numbers.
 */

typedef struct {
    PyObject_HEAD
    Core *core;
    uint64_t generation;
    PyObject *state; /* list: the state's symbols, as given */
    int32_t *state_ids;
    Py_ssize_t lb;
    Py_ssize_t n;                    /* survivors */
    int32_t *pattern, *nblocks, *matched, *block_off, *e1, *e2;
    double *similarity;
    IntVec blocks;   /* (i, j, k) of every survivor */
    IntVec universe; /* distinct symbols of every survivor's matches and present */
} Run;

static void
Run_dealloc(Run *self)
{
    Py_XDECREF(self->core);
    Py_XDECREF(self->state);
    PyMem_Free(self->state_ids);
    PyMem_Free(self->pattern);
    PyMem_Free(self->nblocks);
    PyMem_Free(self->matched);
    PyMem_Free(self->block_off);
    PyMem_Free(self->e1);
    PyMem_Free(self->e2);
    PyMem_Free(self->similarity);
    iv_free(&self->blocks);
    iv_free(&self->universe);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* _events_covering: the fewest leading events whose sizes sum to at least `symbols`. */
static inline int32_t
events_covering(const int32_t *ends, int32_t nev, int32_t symbols)
{
    if (symbols <= 0) {
        return 0;
    }
    for (int32_t e = 0; e < nev; e++) {
        if (ends[e] >= symbols) {
            return e + 1;
        }
    }
    return nev;
}

static int
run_alloc(Run *run, Py_ssize_t cap)
{
    Py_ssize_t c = cap ? cap : 1;
    run->pattern = PyMem_Malloc((size_t)c * sizeof(int32_t));
    run->nblocks = PyMem_Malloc((size_t)c * sizeof(int32_t));
    run->matched = PyMem_Malloc((size_t)c * sizeof(int32_t));
    run->block_off = PyMem_Malloc((size_t)c * sizeof(int32_t));
    run->e1 = PyMem_Malloc((size_t)c * sizeof(int32_t));
    run->e2 = PyMem_Malloc((size_t)c * sizeof(int32_t));
    run->similarity = PyMem_Malloc((size_t)c * sizeof(double));
    if (!run->pattern || !run->nblocks || !run->matched || !run->block_off || !run->e1 ||
        !run->e2 || !run->similarity) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

/* Candidates of the state (the exact index of index.py) into `out`; -1 on error. */
static int
core_candidates(Core *self, const int32_t *ids, Py_ssize_t lb, double threshold, int all,
                IntVec *out)
{
    out->n = 0;
    if (all || threshold == 0.0) {
        if (iv_reserve(out, self->npat) < 0) {
            return -1;
        }
        for (Py_ssize_t p = 0; p < self->npat; p++) {
            out->v[p] = (int32_t)p;
        }
        out->n = self->npat;
        return 0;
    }
    int32_t *count = self->s_count, *bound = self->p_bound;
    IntVec distinct = {0};
    int rc = -1;
    for (Py_ssize_t j = 0; j < lb; j++) {
        int32_t s = ids[j];
        if (s >= 0 && count[s]++ == 0 && iv_push(&distinct, s) < 0) {
            goto done;
        }
    }
    for (Py_ssize_t x = 0; x < distinct.n; x++) {
        int32_t s = distinct.v[x], in_state = count[s];
        Postings *post = &self->postings[s];
        for (int32_t t = 0; t < post->n; t++) {
            int32_t p = post->pat[t], in_pattern = post->cnt[t];
            if (bound[p] == 0 && iv_push(out, p) < 0) {
                goto done;
            }
            bound[p] += in_pattern < in_state ? in_pattern : in_state;
        }
    }
    Py_ssize_t kept = 0;
    for (Py_ssize_t x = 0; x < out->n; x++) {
        int32_t p = out->v[x];
        int32_t la = self->flat_off.v[p + 1] - self->flat_off.v[p];
        if (threshold < 0.0 || 2.0 * bound[p] / (double)(la + lb) >= threshold) {
            out->v[kept++] = p;
        }
        bound[p] = 0;
    }
    out->n = kept;
    rc = 0;
done:
    if (rc < 0) {
        for (Py_ssize_t x = 0; x < out->n; x++) {
            bound[out->v[x]] = 0;
        }
        out->n = 0;
    }
    for (Py_ssize_t x = 0; x < distinct.n; x++) {
        count[distinct.v[x]] = 0;
    }
    iv_free(&distinct);
    return rc;
}

PyDoc_STRVAR(Core_match_doc,
             "match(state, threshold, exhaustive=False) -> Run | None\n\n"
             "Align every candidate with the state and keep those that reach the threshold.");

static PyObject *
Core_match(Core *self, PyObject *args, PyObject *kwargs)
{
    static char *kwnames[] = {"state", "threshold", "exhaustive", NULL};
    PyObject *state_arg;
    double threshold;
    int exhaustive = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "Od|p:match", kwnames, &state_arg, &threshold,
                                     &exhaustive)) {
        return NULL;
    }
    PyObject *state = PySequence_List(state_arg);
    if (state == NULL) {
        return NULL;
    }
    Py_ssize_t lb = PyList_GET_SIZE(state);
    Run *run = NULL;
    IntVec candidates = {0};
    int32_t *ids = PyMem_Malloc((size_t)(lb ? lb : 1) * sizeof(int32_t));
    int b_set = 0;
    if (ids == NULL) {
        PyErr_NoMemory();
        goto fail;
    }
    for (Py_ssize_t j = 0; j < lb; j++) {
        PyObject *symbol = PyList_GET_ITEM(state, j);
        PyObject *id = PyUnicode_Check(symbol) ? PyDict_GetItemWithError(self->ids, symbol)
                                               : NULL;
        if (id == NULL && PyErr_Occurred()) {
            goto fail;
        }
        ids[j] = id ? (int32_t)PyLong_AsLong(id) : -1; /* -1: in no pattern */
    }
    if (core_candidates(self, ids, lb, threshold, exhaustive, &candidates) < 0) {
        goto fail;
    }
    if (candidates.n == 0) {
        PyMem_Free(ids);
        Py_DECREF(state);
        iv_free(&candidates);
        Py_RETURN_NONE;
    }
    run = PyObject_New(Run, &RunType);
    if (run == NULL) {
        goto fail;
    }
    Py_INCREF(self);
    run->core = self;
    run->generation = self->generation;
    run->state = state;
    run->state_ids = ids;
    run->lb = lb;
    run->n = 0;
    run->pattern = run->nblocks = run->matched = run->block_off = run->e1 = run->e2 = NULL;
    run->similarity = NULL;
    memset(&run->blocks, 0, sizeof(IntVec));
    memset(&run->universe, 0, sizeof(IntVec));
    state = NULL;
    ids = NULL;
    if (run_alloc(run, candidates.n) < 0) {
        goto fail;
    }
    Matcher *m = &self->matcher;
    if (matcher_set_b(m, run->state_ids, lb, 0) < 0) {
        goto fail;
    }
    b_set = 1;
    int32_t *seen = self->s_seen;
    for (Py_ssize_t c = 0; c < candidates.n; c++) {
        int32_t p = candidates.v[c];
        const int32_t *a = self->flat.v + self->flat_off.v[p];
        int32_t la = self->flat_off.v[p + 1] - self->flat_off.v[p];
        Py_ssize_t nb = matching_blocks(m, a, la);
        if (nb < 0) {
            goto fail;
        }
        int32_t total = 0;
        for (Py_ssize_t x = 0; x < nb; x++) {
            total += m->blocks.v[3 * x + 2];
        }
        if (la + lb == 0) {
            PyErr_SetString(PyExc_ZeroDivisionError, "float division by zero");
            goto fail;
        }
        double similarity = 2.0 * total / (double)(la + lb);
        int32_t start, end;
        if (nb == 0) {
            if (threshold != 0.0) {
                continue;
            }
            start = 0;
            end = la;
        }
        else {
            if (similarity < threshold) {
                continue;
            }
            start = m->blocks.v[0];
            end = m->blocks.v[3 * (nb - 1)] + m->blocks.v[3 * (nb - 1) + 2];
        }
        const int32_t *ends = self->ev_end.v + self->ev_off.v[p];
        int32_t nev = self->ev_off.v[p + 1] - self->ev_off.v[p];
        int32_t e1 = events_covering(ends, nev, start);
        int32_t e2 = events_covering(ends, nev, end);
        if (e1 > 0 && nb > 0) { /* the fix-up rule of spec §4.6 */
            int32_t first = run->state_ids[m->blocks.v[1]];
            int32_t from = e1 > 1 ? ends[e1 - 2] : 0;
            for (int32_t x = from; x < ends[e1 - 1]; x++) {
                if (a[x] == first) {
                    e1--;
                    break;
                }
            }
        }
        Py_ssize_t r = run->n++;
        run->pattern[r] = p;
        run->nblocks[r] = (int32_t)nb;
        run->matched[r] = total;
        run->similarity[r] = similarity;
        run->block_off[r] = (int32_t)run->blocks.n;
        run->e1[r] = e1;
        run->e2[r] = e2;
        if (iv_reserve(&run->blocks, run->blocks.n + 3 * nb) < 0) {
            goto fail;
        }
        memcpy(run->blocks.v + run->blocks.n, m->blocks.v, (size_t)(3 * nb) * sizeof(int32_t));
        run->blocks.n += 3 * nb;
        /* the universe: matched symbols and the present's symbols */
        for (Py_ssize_t x = 0; x < nb; x++) {
            int32_t j = m->blocks.v[3 * x + 1], k = m->blocks.v[3 * x + 2];
            for (int32_t y = j; y < j + k; y++) {
                int32_t s = run->state_ids[y];
                if (!seen[s]) {
                    seen[s] = 1;
                    if (iv_push(&run->universe, s) < 0) {
                        goto fail;
                    }
                }
            }
        }
        int32_t ps = e1 > 0 ? ends[e1 - 1] : 0, pe = e2 > 0 ? ends[e2 - 1] : 0;
        for (int32_t x = ps; x < pe; x++) {
            int32_t s = a[x];
            if (!seen[s]) {
                seen[s] = 1;
                if (iv_push(&run->universe, s) < 0) {
                    goto fail;
                }
            }
        }
    }
    for (Py_ssize_t x = 0; x < run->universe.n; x++) {
        seen[run->universe.v[x]] = 0;
    }
    matcher_unset_b(m);
    iv_free(&candidates);
    if (run->n == 0) {
        Py_DECREF(run);
        Py_RETURN_NONE;
    }
    return (PyObject *)run;
fail:
    if (run != NULL) {
        for (Py_ssize_t x = 0; x < run->universe.n; x++) {
            self->s_seen[run->universe.v[x]] = 0;
        }
        Py_DECREF(run);
    }
    if (b_set) {
        matcher_unset_b(&self->matcher);
    }
    PyMem_Free(ids);
    Py_XDECREF(state);
    iv_free(&candidates);
    return NULL;
}

static int
run_check(Run *self)
{
    if (self->generation != self->core->generation) {
        PyErr_SetString(PyExc_RuntimeError, "the index was cleared since this match");
        return -1;
    }
    return 0;
}

static PyObject *
Run_names(Run *self, PyObject *Py_UNUSED(ignored))
{
    if (run_check(self) < 0) {
        return NULL;
    }
    PyObject *names = PyList_New(self->n);
    if (names == NULL) {
        return NULL;
    }
    for (Py_ssize_t r = 0; r < self->n; r++) {
        PyObject *name = self->core->names[self->pattern[r]];
        Py_INCREF(name);
        PyList_SET_ITEM(names, r, name);
    }
    return names;
}

static PyObject *
Run_universe(Run *self, PyObject *Py_UNUSED(ignored))
{
    if (run_check(self) < 0) {
        return NULL;
    }
    PyObject *symbols = PyList_New(self->universe.n);
    if (symbols == NULL) {
        return NULL;
    }
    for (Py_ssize_t x = 0; x < self->universe.n; x++) {
        PyObject *symbol = self->core->symbols[self->universe.v[x]];
        Py_INCREF(symbol);
        PyList_SET_ITEM(symbols, x, symbol);
    }
    return symbols;
}

static Py_ssize_t
Run_len(Run *self)
{
    return self->n;
}

/* The JSON string of the core's symbol s, escaped once and kept in the core's arena. */
static int
json_symbol(Core *core, Buf *b, int32_t s)
{
    if (core->sj_off[s] == 0) {
        Py_ssize_t at = core->sj.n;
        if (json_str(&core->sj, core->symbols[s]) < 0) {
            return -1;
        }
        core->sj_off[s] = at + 1;
        core->sj_len[s] = core->sj.n - at;
    }
    return buf_put(b, core->sj.v + core->sj_off[s] - 1, core->sj_len[s]);
}

/* Events from..to of pattern p as [["x","y"],...]: a slice of the pattern's JSON, which is
 * written the first time the pattern is predicted. */
static int
json_events(Core *core, Buf *b, int32_t p, int32_t from, int32_t to)
{
    if (from >= to) {
        return BUF_LIT(b, "[]");
    }
    int32_t *pos = core->pj_pos + core->ev_off.v[p] + p;
    if (core->pj_off[p] == 0) {
        const int32_t *a = core->flat.v + core->flat_off.v[p];
        const int32_t *ends = core->ev_end.v + core->ev_off.v[p];
        int32_t nev = core->ev_off.v[p + 1] - core->ev_off.v[p];
        Buf *pj = &core->pj;
        Py_ssize_t at = pj->n;
        for (int32_t e = 0; e < nev; e++) {
            if (pj->n - at > INT32_MAX - 2) {
                PyErr_SetString(PyExc_OverflowError, "pattern too large");
                return -1;
            }
            pos[e] = (int32_t)(pj->n - at);
            if ((e > 0 && buf_ch(pj, ',') < 0) || buf_ch(pj, '[') < 0) {
                return -1;
            }
            pos[e] += e > 0; /* after the comma */
            for (int32_t x = e > 0 ? ends[e - 1] : 0; x < ends[e]; x++) {
                if ((x > (e > 0 ? ends[e - 1] : 0) && buf_ch(pj, ',') < 0) ||
                    json_symbol(core, pj, a[x]) < 0) {
                    return -1;
                }
            }
            if (buf_ch(pj, ']') < 0) {
                return -1;
            }
        }
        pos[nev] = (int32_t)(pj->n - at + 1);
        core->pj_off[p] = at + 1;
    }
    const char *text = core->pj.v + core->pj_off[p] - 1;
    Py_ssize_t len = pos[to] - 1 - pos[from];
    if (buf_reserve(b, len + 2) < 0) {
        return -1;
    }
    b->v[b->n++] = '[';
    memcpy(b->v + b->n, text + pos[from], (size_t)len);
    b->n += len;
    b->v[b->n++] = ']';
    return 0;
}

/* State symbol j: from the arena when the core knows it, else escaped from the str. */
static inline int
json_state_symbol(Run *self, Buf *b, Py_ssize_t j)
{
    int32_t s = self->state_ids[j];
    return s >= 0 ? json_symbol(self->core, b, s) : json_str(b, PyList_GET_ITEM(self->state, j));
}

/* ------------------------------------------------------------------------------------------
 * Run.predictions: the ensemble step and the ranked predictions, written as JSON.
 */

static PyObject *str_frequency_attr, *str_emotives_attr;

/* Per-survivor numbers of the ensemble step. */
typedef struct {
    double potential, itfdf, evidence, confidence, snr, fragmentation, p_h;
    long long frequency;
    PyObject *record; /* borrowed from the records mapping, or NULL */
} Scored;

typedef struct {
    Scored *scored;
    PyObject **names;
    const int32_t *pattern;
} SortContext;

/* Merge sort of survivor indices by (-potential, name): the reference's sort key. */
static int
ranks_before(const SortContext *ctx, int32_t x, int32_t y, int *error)
{
    double px = ctx->scored[x].potential, py = ctx->scored[y].potential;
    if (px > py) {
        return 1;
    }
    if (px < py) {
        return 0;
    }
    int lt = PyObject_RichCompareBool(ctx->names[ctx->pattern[x]], ctx->names[ctx->pattern[y]],
                                      Py_LT);
    if (lt < 0) {
        *error = 1;
        return 0;
    }
    return lt;
}

static void
merge_sort(const SortContext *ctx, int32_t *v, int32_t *tmp, Py_ssize_t n, int *error)
{
    if (n < 2) {
        return;
    }
    Py_ssize_t h = n / 2;
    merge_sort(ctx, v, tmp, h, error);
    merge_sort(ctx, v + h, tmp, n - h, error);
    Py_ssize_t i = 0, j = h, k = 0;
    while (i < h && j < n) {
        tmp[k++] = ranks_before(ctx, v[j], v[i], error) ? v[j++] : v[i++];
    }
    while (i < h) {
        tmp[k++] = v[i++];
    }
    while (j < n) {
        tmp[k++] = v[j++];
    }
    memcpy(v, tmp, (size_t)n * sizeof(int32_t));
}

/* The emotives of a prediction: the record's window averaged, {} without a record. */
static int
json_emotives(Buf *b, PyObject *record, PyObject *average, PyObject *encode)
{
    if (record == NULL) {
        return BUF_LIT(b, "{}");
    }
    PyObject *window = PyObject_GetAttr(record, str_emotives_attr);
    if (window == NULL) {
        return -1;
    }
    if (PyList_CheckExact(window) && PyList_GET_SIZE(window) == 0) {
        Py_DECREF(window);
        return BUF_LIT(b, "{}");
    }
    PyObject *averaged = PyObject_CallOneArg(average, window);
    Py_DECREF(window);
    if (averaged == NULL) {
        return -1;
    }
    int rc;
    if (PyDict_CheckExact(averaged) && PyDict_GET_SIZE(averaged) == 0) {
        rc = BUF_LIT(b, "{}");
    }
    else { /* rare (learned with emotives): the caller's encoder writes the dict */
        PyObject *encoded = PyObject_CallOneArg(encode, averaged);
        if (encoded != NULL && !PyBytes_Check(encoded)) {
            PyErr_SetString(PyExc_TypeError, "encode must return bytes");
            Py_CLEAR(encoded);
        }
        rc = encoded == NULL
                 ? -1
                 : buf_put(b, PyBytes_AS_STRING(encoded), PyBytes_GET_SIZE(encoded));
        Py_XDECREF(encoded);
    }
    Py_DECREF(averaged);
    return rc;
}

/* The prediction object of survivor r (spec §4.8) as JSON, its ensemble numbers known. */
static int
write_prediction(Run *self, Buf *b, Py_ssize_t r, const Scored *sc, long long n_symbols,
                 double log_n, PyObject *average, PyObject *encode)
{
    Core *core = self->core;
    int32_t p = self->pattern[r];
    const int32_t *a = core->flat.v + core->flat_off.v[p];
    const int32_t *ends = core->ev_end.v + core->ev_off.v[p];
    int32_t nev = core->ev_off.v[p + 1] - core->ev_off.v[p];
    int32_t e1 = self->e1[r], e2 = self->e2[r], nb = self->nblocks[r];
    const int32_t *blocks = self->blocks.v + self->block_off[r];
    int32_t ps = e1 > 0 ? ends[e1 - 1] : 0, pe = e2 > 0 ? ends[e2 - 1] : 0;
    Py_ssize_t size = pe - ps;
    int32_t *count = core->s_count, *seen = core->s_seen;
    /* the present's terms, summed in the reference's order */
    for (Py_ssize_t x = ps; x < pe; x++) {
        count[a[x]]++;
    }
    PySum entropy, hamiltonian, grand, log_sum;
    ps_init(&entropy);
    ps_init(&hamiltonian);
    ps_init(&grand);
    ps_init(&log_sum);
    for (Py_ssize_t x = ps; x < pe; x++) {
        int32_t s = a[x];
        ps_add(&entropy, core->s_surprisal[s]);
        double q = (double)count[s] / (double)size;
        ps_add(&hamiltonian, spread_term(q, n_symbols, log_n));
        ps_add(&log_sum, core->s_logp[s]);
    }
    for (Py_ssize_t x = ps; x < pe; x++) {
        int32_t s = a[x];
        if (count[s]) {
            ps_add(&grand, core->s_spread[s]);
            count[s] = 0;
        }
    }
    double product = size ? pow(10.0, ps_result(&log_sum)) : 0.0;
    double e = 0.0, h = 0.0, g = 0.0, confluence;
    if (size && (round12(ps_result(&entropy), &e) < 0 ||
                 round12(ps_result(&hamiltonian), &h) < 0 ||
                 round12(ps_result(&grand), &g) < 0)) {
        return -1;
    }
    if (round12(sc->p_h * (1.0 - product), &confluence) < 0) {
        return -1;
    }
    if (BUF_LIT(b, "{\"type\":\"prototypical\",\"name\":") < 0 ||
        json_str(b, core->names[p]) < 0 || BUF_LIT(b, ",\"frequency\":") < 0 ||
        json_int(b, sc->frequency) < 0 || BUF_LIT(b, ",\"emotives\":") < 0 ||
        json_emotives(b, sc->record, average, encode) < 0) {
        return -1;
    }
    /* matches (state symbols of the blocks) and extras (the rest of the state), in order */
    if (BUF_LIT(b, ",\"matches\":[") < 0) {
        return -1;
    }
    Py_ssize_t written = 0;
    for (int32_t x = 0; x < nb; x++) {
        for (int32_t j = blocks[3 * x + 1]; j < blocks[3 * x + 1] + blocks[3 * x + 2]; j++) {
            if ((written++ && buf_ch(b, ',') < 0) || json_state_symbol(self, b, j) < 0) {
                return -1;
            }
        }
    }
    if (BUF_LIT(b, "],\"past\":") < 0 || json_events(core, b, p, 0, e1) < 0 ||
        BUF_LIT(b, ",\"present\":") < 0 || json_events(core, b, p, e1, e2) < 0 ||
        BUF_LIT(b, ",\"missing\":[") < 0) {
        return -1;
    }
    /* missing: the present's symbols not among the matches, in pattern order */
    for (int32_t x = 0; x < nb; x++) {
        for (int32_t j = blocks[3 * x + 1]; j < blocks[3 * x + 1] + blocks[3 * x + 2]; j++) {
            seen[self->state_ids[j]] = 1;
        }
    }
    written = 0;
    int rc = 0;
    for (Py_ssize_t x = ps; rc == 0 && x < pe; x++) {
        if (!seen[a[x]]) {
            rc = ((written++ && buf_ch(b, ',') < 0) || json_symbol(core, b, a[x]) < 0) ? -1 : 0;
        }
    }
    for (int32_t x = 0; x < nb; x++) {
        for (int32_t j = blocks[3 * x + 1]; j < blocks[3 * x + 1] + blocks[3 * x + 2]; j++) {
            seen[self->state_ids[j]] = 0;
        }
    }
    if (rc < 0 || BUF_LIT(b, "],\"extras\":[") < 0) {
        return -1;
    }
    written = 0;
    Py_ssize_t j = 0;
    for (int32_t x = 0; x <= nb; x++) {
        Py_ssize_t bj = x < nb ? blocks[3 * x + 1] : self->lb;
        for (; j < bj; j++) {
            if ((written++ && buf_ch(b, ',') < 0) || json_state_symbol(self, b, j) < 0) {
                return -1;
            }
        }
        j += x < nb ? blocks[3 * x + 2] : 0;
    }
    if (BUF_LIT(b, "],\"potential\":") < 0 || json_float(b, sc->potential) < 0 ||
        BUF_LIT(b, ",\"evidence\":") < 0 || json_float(b, sc->evidence) < 0 ||
        BUF_LIT(b, ",\"similarity\":") < 0 || json_float(b, self->similarity[r]) < 0 ||
        BUF_LIT(b, ",\"fragmentation\":") < 0 || json_float(b, sc->fragmentation) < 0 ||
        BUF_LIT(b, ",\"snr\":") < 0 || json_float(b, sc->snr) < 0) {
        return -1;
    }
    /* sum([]) is the int 0, and round(0, 12) too */
    if (BUF_LIT(b, ",\"entropy\":") < 0 || (size ? json_float(b, e) : buf_ch(b, '0')) < 0 ||
        BUF_LIT(b, ",\"hamiltonian\":") < 0 || (size ? json_float(b, h) : buf_ch(b, '0')) < 0 ||
        BUF_LIT(b, ",\"grand_hamiltonian\":") < 0 ||
        (size ? json_float(b, g) : buf_ch(b, '0')) < 0 || BUF_LIT(b, ",\"confluence\":") < 0 ||
        json_float(b, confluence) < 0) {
        return -1;
    }
    if (BUF_LIT(b, ",\"sequence\":") < 0 || json_events(core, b, p, 0, nev) < 0 ||
        BUF_LIT(b, ",\"future\":") < 0 || json_events(core, b, p, e2, nev) < 0 ||
        BUF_LIT(b, ",\"confidence\":") < 0 || json_float(b, sc->confidence) < 0 ||
        BUF_LIT(b, ",\"itfdf_similarity\":") < 0 || json_float(b, sc->itfdf) < 0) {
        return -1;
    }
    return buf_ch(b, '}');
}

/* A Python int argument as a long long (TypeError for anything else). */
static int
as_long_long(PyObject *value, long long *out)
{
    if (!PyLong_Check(value)) {
        PyErr_Format(PyExc_TypeError, "expected an int, got %.100s", Py_TYPE(value)->tp_name);
        return -1;
    }
    *out = PyLong_AsLongLong(value);
    return (*out == -1 && PyErr_Occurred()) ? -1 : 0;
}

/* mapping.get(key) as a borrowed reference (dicts) or NULL when absent; -1 on error. */
static int
lookup(PyObject *mapping, PyObject *key, PyObject **out, PyObject **owned)
{
    *owned = NULL;
    if (PyDict_Check(mapping)) {
        *out = PyDict_GetItemWithError(mapping, key);
        return (*out == NULL && PyErr_Occurred()) ? -1 : 0;
    }
    *out = PyObject_GetItem(mapping, key);
    if (*out == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_KeyError)) {
            return -1;
        }
        PyErr_Clear();
        return 0;
    }
    *owned = *out;
    return 0;
}

PyDoc_STRVAR(Run_predictions_doc,
             "predictions(records, member_frequencies, total_pattern_frequencies,\n"
             "            total_symbols_in_patterns_frequencies, symbol_count, max_predictions,\n"
             "            average, encode) -> bytes\n\n"
             "The ranked prediction objects as compact JSON, given the knowledge base's numbers\n"
             "(spec §4.7); encode (msgspec's) writes the rare non-empty emotives.");

static PyObject *
Run_predictions(Run *self, PyObject *args)
{
    PyObject *records, *stats, *t_pf_obj, *t_sip_obj, *n_obj, *average, *encode;
    Py_ssize_t max_predictions;
    if (!PyArg_ParseTuple(args, "OOOOOnOO:predictions", &records, &stats, &t_pf_obj,
                          &t_sip_obj, &n_obj, &max_predictions, &average, &encode)) {
        return NULL;
    }
    if (run_check(self) < 0) {
        return NULL;
    }
    long long t_pf, t_sip, n_symbols;
    if (as_long_long(t_pf_obj, &t_pf) < 0 || as_long_long(t_sip_obj, &t_sip) < 0 ||
        as_long_long(n_obj, &n_symbols) < 0) {
        return NULL;
    }
    Core *core = self->core;
    Py_ssize_t n = self->n;
    Scored *scored = PyMem_Calloc((size_t)n, sizeof(Scored));
    int32_t *order = PyMem_Malloc((size_t)n * sizeof(int32_t));
    int32_t *tmp = PyMem_Malloc((size_t)n * sizeof(int32_t));
    PyObject **owned = PyMem_Calloc((size_t)n, sizeof(PyObject *));
    IntVec state_terms = {0};
    PyObject *result = NULL;
    int32_t *count = core->s_count, *seen = core->s_seen;
    if (!scored || !order || !tmp || !owned) {
        PyErr_NoMemory();
        goto done;
    }
    if (grow_zeroed((void **)&core->sj_off, &core->sj_cap[0], core->nsym, sizeof(Py_ssize_t)) <
            0 ||
        grow_zeroed((void **)&core->sj_len, &core->sj_cap[1], core->nsym, sizeof(Py_ssize_t)) <
            0 ||
        grow_zeroed((void **)&core->pj_off, &core->pj_cap[0], core->npat, sizeof(Py_ssize_t)) <
            0 ||
        grow_zeroed((void **)&core->pj_pos, &core->pj_cap[1], core->ev_end.n + core->npat,
                    sizeof(int32_t)) < 0) {
        goto done;
    }
    /* frequencies, F_ens */
    long long f_ens = 0;
    for (Py_ssize_t r = 0; r < n; r++) {
        PyObject *record;
        if (lookup(records, core->names[self->pattern[r]], &record, &owned[r]) < 0) {
            goto done;
        }
        scored[r].record = record;
        if (record != NULL) {
            PyObject *frequency = PyObject_GetAttr(record, str_frequency_attr);
            int rc = frequency ? as_long_long(frequency, &scored[r].frequency) : -1;
            Py_XDECREF(frequency);
            if (rc < 0) {
                goto done;
            }
        }
        f_ens += scored[r].frequency;
    }
    /* per-symbol terms over the universe */
    double log_n = log((double)n_symbols);
    for (Py_ssize_t x = 0; x < self->universe.n; x++) {
        int32_t s = self->universe.v[x];
        double q = 0.0;
        if (t_sip > 0) {
            PyObject *members, *members_owned;
            if (lookup(stats, core->symbols[s], &members, &members_owned) < 0) {
                goto done;
            }
            if (members != NULL) {
                long long pmf;
                int rc = as_long_long(members, &pmf);
                Py_XDECREF(members_owned);
                if (rc < 0 || int_true_divide(pmf, t_sip, &q) < 0) {
                    goto done;
                }
            }
        }
        core->s_prob[s] = q;
        core->s_surprisal[s] = q > 0.0 ? -q * log2(q) : 0.0;
        core->s_spread[s] = spread_term(q, n_symbols, log_n);
        core->s_logp[s] = log10(q > 0.0 ? q : 1e-10);
    }
    /* the state's side of itfdf: symbols with P > 0, first-seen order, u = P·count */
    for (Py_ssize_t j = 0; j < self->lb; j++) {
        int32_t s = self->state_ids[j];
        if (s >= 0 && seen[s]++ == 0 && iv_push(&state_terms, s) < 0) {
            goto done;
        }
    }
    for (Py_ssize_t x = 0; x < state_terms.n; x++) {
        int32_t s = state_terms.v[x];
        core->s_u[s] = core->s_prob[s] * (double)seen[s];
    }
    /* itfdf and potential of every survivor */
    for (Py_ssize_t r = 0; r < n; r++) {
        Scored *sc = &scored[r];
        int32_t p = self->pattern[r];
        const int32_t *a = core->flat.v + core->flat_off.v[p];
        const int32_t *ends = core->ev_end.v + core->ev_off.v[p];
        int32_t la = core->flat_off.v[p + 1] - core->flat_off.v[p];
        int32_t e1 = self->e1[r], e2 = self->e2[r];
        int32_t ps = e1 > 0 ? ends[e1 - 1] : 0, pe = e2 > 0 ? ends[e2 - 1] : 0;
        int32_t size = pe - ps, matched = self->matched[r];
        double itfdf = 0.0;
        if (f_ens != 0) {
            for (int32_t x = ps; x < pe; x++) {
                count[a[x]]++;
            }
            double dot = 0.0, uu = 0.0, vv = 0.0, distance;
            for (Py_ssize_t x = 0; x < state_terms.n; x++) {
                int32_t s = state_terms.v[x];
                double q = core->s_prob[s];
                if (q == 0.0) {
                    continue; /* adds +0.0 to non-negative sums: changes nothing */
                }
                double u = core->s_u[s], v = q * (double)count[s];
                dot += u * v;
                uu += u * u;
                vv += v * v;
            }
            for (int32_t x = ps; x < pe; x++) {
                int32_t s = a[x];
                if (count[s] && !seen[s]) { /* present only: u = 0 */
                    double v = core->s_prob[s] * (double)count[s];
                    vv += v * v;
                }
                count[s] = 0;
            }
            if (uu == 0.0 || vv == 0.0) {
                distance = 1.0;
            }
            else {
                distance = 1.0 - dot / sqrt(uu * vv);
                if (isnan(distance)) {
                    distance = 1.0;
                }
                else {
                    distance = distance < 0.0 ? 0.0 : distance;
                    distance = 2.0 < distance ? 2.0 : distance;
                }
            }
            if (round12(1.0 - distance * (double)sc->frequency / (double)f_ens, &itfdf) < 0) {
                goto done;
            }
        }
        sc->itfdf = itfdf;
        sc->evidence = la ? (double)matched / (double)la : 0.0;
        sc->confidence = size ? (double)matched / (double)size : 0.0;
        sc->fragmentation = (double)(self->nblocks[r] - 1);
        Py_ssize_t signal = 2 * (Py_ssize_t)matched, noise = self->lb - matched;
        sc->snr = signal + noise ? (double)(signal - noise) / (double)(signal + noise) : 0.0;
        if (t_pf) {
            if (int_true_divide(sc->frequency, t_pf, &sc->p_h) < 0) {
                goto done;
            }
        }
        else {
            sc->p_h = 0.0;
        }
        double fragment = sc->fragmentation == -1.0 ? 0.0 : 1.0 / (sc->fragmentation + 1.0);
        double potential = (sc->evidence + sc->confidence) * sc->snr + itfdf + fragment;
        if (round12(potential, &sc->potential) < 0) {
            goto done;
        }
        order[r] = (int32_t)r;
    }
    for (Py_ssize_t x = 0; x < state_terms.n; x++) {
        seen[state_terms.v[x]] = 0;
    }
    state_terms.n = 0; /* seen is clean again */
    /* rank, keep the best, write them */
    SortContext ctx = {scored, core->names, self->pattern};
    int error = 0;
    merge_sort(&ctx, order, tmp, n, &error);
    if (error) {
        goto done;
    }
    Py_ssize_t keep = max_predictions < n ? max_predictions : n;
    Buf *out = &core->out;
    out->n = 0;
    if (buf_ch(out, '[') < 0) {
        goto done;
    }
    for (Py_ssize_t x = 0; x < keep; x++) {
        if ((x && buf_ch(out, ',') < 0) ||
            write_prediction(self, out, order[x], &scored[order[x]], n_symbols, log_n, average,
                             encode) < 0) {
            goto done;
        }
    }
    if (buf_ch(out, ']') < 0) {
        goto done;
    }
    result = PyBytes_FromStringAndSize(out->v, out->n);
    if (out->cap > 4 * out->n && out->cap > (1 << 20)) { /* one huge record: give it back */
        buf_free(out);
    }
done:
    for (Py_ssize_t x = 0; x < state_terms.n; x++) {
        seen[state_terms.v[x]] = 0;
    }
    for (Py_ssize_t x = 0; x < self->universe.n; x++) {
        int32_t s = self->universe.v[x];
        core->s_prob[s] = core->s_surprisal[s] = core->s_spread[s] = core->s_logp[s] = 0.0;
        core->s_u[s] = 0.0;
    }
    if (owned != NULL) {
        for (Py_ssize_t r = 0; r < n; r++) {
            Py_XDECREF(owned[r]);
        }
    }
    iv_free(&state_terms);
    PyMem_Free(scored);
    PyMem_Free(order);
    PyMem_Free(tmp);
    PyMem_Free(owned);
    return result;
}

/* ------------------------------------------------------------------------------------------
 * Learning: the pattern's name (naming.pattern_hash) and the memory store's learn.
 */

/* SHA-1 (FIPS 180-4), for pattern names: no libcrypto to link, a few dozen lines. */
#define ROL32(x, n) (((x) << (n)) | ((x) >> (32 - (n))))
#define SHA1_ROUND(f, k, t)                                                                   \
    do {                                                                                      \
        uint32_t temp = ROL32(a, 5) + (f) + e + (k) + w[t];                                   \
        e = d;                                                                                \
        d = c;                                                                                \
        c = ROL32(b, 30);                                                                     \
        b = a;                                                                                \
        a = temp;                                                                             \
    } while (0)

/* Fold one 64-byte block into h; the four kinds of round in loops of their own (no branch). */
static void
sha1_block(uint32_t h[5], const unsigned char *p)
{
    uint32_t w[80];
    for (int t = 0; t < 16; t++) {
        w[t] = (uint32_t)p[4 * t] << 24 | (uint32_t)p[4 * t + 1] << 16 |
               (uint32_t)p[4 * t + 2] << 8 | (uint32_t)p[4 * t + 3];
    }
    for (int t = 16; t < 80; t++) {
        w[t] = ROL32(w[t - 3] ^ w[t - 8] ^ w[t - 14] ^ w[t - 16], 1);
    }
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
    for (int t = 0; t < 20; t++) {
        SHA1_ROUND((b & c) | (~b & d), 0x5A827999u, t);
    }
    for (int t = 20; t < 40; t++) {
        SHA1_ROUND(b ^ c ^ d, 0x6ED9EBA1u, t);
    }
    for (int t = 40; t < 60; t++) {
        SHA1_ROUND((b & c) | (b & d) | (c & d), 0x8F1BBCDCu, t);
    }
    for (int t = 60; t < 80; t++) {
        SHA1_ROUND(b ^ c ^ d, 0xCA62C1D6u, t);
    }
    h[0] += a;
    h[1] += b;
    h[2] += c;
    h[3] += d;
    h[4] += e;
}

#if defined(__x86_64__) && defined(__GNUC__)
/* The same blocks with the x86 SHA extensions (most x86-64 CPUs since 2017): ~10x faster here.
 * Rounds four at a time; the message schedule runs three groups ahead of them. */
#include <cpuid.h>
#include <immintrin.h>

#define SHA1_NI_LOAD(at) _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + (at))), mask)
#define SHA1_NI_ROUNDS(f, E, Eother, M0, M1, M2, M3)                                          \
    do {                                                                                      \
        E = _mm_sha1nexte_epu32(E, M0);                                                       \
        Eother = abcd;                                                                        \
        M1 = _mm_sha1msg2_epu32(M1, M0);                                                      \
        abcd = _mm_sha1rnds4_epu32(abcd, E, f);                                               \
        M3 = _mm_sha1msg1_epu32(M3, M0);                                                      \
        M2 = _mm_xor_si128(M2, M0);                                                           \
    } while (0)

__attribute__((target("sha,sse4.1"))) static void
sha1_blocks_ni(uint32_t h[5], const unsigned char *p, size_t blocks)
{
    const __m128i mask = _mm_set_epi64x(0x0001020304050607LL, 0x08090a0b0c0d0e0fLL);
    __m128i abcd = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)h), 0x1B);
    __m128i e0 = _mm_set_epi32((int)h[4], 0, 0, 0), e1, m0, m1, m2, m3;
    for (; blocks > 0; blocks--, p += 64) {
        __m128i abcd_saved = abcd, e0_saved = e0;
        /* rounds 0-15: the block's 16 words */
        m0 = SHA1_NI_LOAD(0);
        e0 = _mm_add_epi32(e0, m0);
        e1 = abcd;
        abcd = _mm_sha1rnds4_epu32(abcd, e0, 0);
        m1 = SHA1_NI_LOAD(16);
        e1 = _mm_sha1nexte_epu32(e1, m1);
        e0 = abcd;
        abcd = _mm_sha1rnds4_epu32(abcd, e1, 0);
        m0 = _mm_sha1msg1_epu32(m0, m1);
        m2 = SHA1_NI_LOAD(32);
        e0 = _mm_sha1nexte_epu32(e0, m2);
        e1 = abcd;
        abcd = _mm_sha1rnds4_epu32(abcd, e0, 0);
        m1 = _mm_sha1msg1_epu32(m1, m2);
        m0 = _mm_xor_si128(m0, m2);
        m3 = SHA1_NI_LOAD(48);
        e1 = _mm_sha1nexte_epu32(e1, m3);
        e0 = abcd;
        m0 = _mm_sha1msg2_epu32(m0, m3);
        abcd = _mm_sha1rnds4_epu32(abcd, e1, 0);
        m2 = _mm_sha1msg1_epu32(m2, m3);
        m1 = _mm_xor_si128(m1, m3);
        /* rounds 16-79: m0..m3 rotate; e0/e1 alternate */
        SHA1_NI_ROUNDS(0, e0, e1, m0, m1, m2, m3); /* 16-19 */
        SHA1_NI_ROUNDS(1, e1, e0, m1, m2, m3, m0); /* 20-23 */
        SHA1_NI_ROUNDS(1, e0, e1, m2, m3, m0, m1); /* 24-27 */
        SHA1_NI_ROUNDS(1, e1, e0, m3, m0, m1, m2); /* 28-31 */
        SHA1_NI_ROUNDS(1, e0, e1, m0, m1, m2, m3); /* 32-35 */
        SHA1_NI_ROUNDS(1, e1, e0, m1, m2, m3, m0); /* 36-39 */
        SHA1_NI_ROUNDS(2, e0, e1, m2, m3, m0, m1); /* 40-43 */
        SHA1_NI_ROUNDS(2, e1, e0, m3, m0, m1, m2); /* 44-47 */
        SHA1_NI_ROUNDS(2, e0, e1, m0, m1, m2, m3); /* 48-51 */
        SHA1_NI_ROUNDS(2, e1, e0, m1, m2, m3, m0); /* 52-55 */
        SHA1_NI_ROUNDS(2, e0, e1, m2, m3, m0, m1); /* 56-59 */
        SHA1_NI_ROUNDS(3, e1, e0, m3, m0, m1, m2); /* 60-63 */
        SHA1_NI_ROUNDS(3, e0, e1, m0, m1, m2, m3); /* 64-67 */
        SHA1_NI_ROUNDS(3, e1, e0, m1, m2, m3, m0); /* 68-71 */
        SHA1_NI_ROUNDS(3, e0, e1, m2, m3, m0, m1); /* 72-75 */
        /* 76-79 */
        e1 = _mm_sha1nexte_epu32(e1, m3);
        e0 = abcd;
        abcd = _mm_sha1rnds4_epu32(abcd, e1, 3);
        e0 = _mm_sha1nexte_epu32(e0, e0_saved);
        abcd = _mm_add_epi32(abcd, abcd_saved);
    }
    _mm_storeu_si128((__m128i *)h, _mm_shuffle_epi32(abcd, 0x1B));
    h[4] = (uint32_t)_mm_extract_epi32(e0, 3);
}

static int
sha1_has_ni(void)
{
    unsigned int a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & bit_SSE4_1) || !(c & bit_SSSE3)) {
        return 0;
    }
    return __get_cpuid_count(7, 0, &a, &b, &c, &d) && (b & (1u << 29)) != 0;
}
#else
static int
sha1_has_ni(void)
{
    return 0;
}
#endif

static int sha1_ni; /* set at import: the CPU has the SHA extensions */

static void
sha1_blocks(uint32_t h[5], const unsigned char *p, size_t blocks, int ni)
{
#if defined(__x86_64__) && defined(__GNUC__)
    if (ni) {
        sha1_blocks_ni(h, p, blocks);
        return;
    }
#endif
    for (; blocks > 0; blocks--, p += 64) {
        sha1_block(h, p);
    }
}

/* The SHA-1 of n bytes as 40 lower-case hex digits (and a NUL); ni: with sha1_blocks_ni. */
static void
sha1_hex(const unsigned char *data, size_t n, char out[41], int ni)
{
    uint32_t h[5] = {0x67452301u, 0xEFCDAB89u, 0x98BADCFEu, 0x10325476u, 0xC3D2E1F0u};
    size_t full = n - n % 64;
    sha1_blocks(h, data, full / 64, ni);
    /* the tail, 0x80, zeros and the bit length: one block, or two when the tail is >= 56 */
    unsigned char last[128] = {0};
    size_t tail = n - full, blocks = tail < 56 ? 1 : 2;
    memcpy(last, data + full, tail);
    last[tail] = 0x80;
    uint64_t bits = (uint64_t)n * 8;
    for (int x = 0; x < 8; x++) {
        last[64 * blocks - 1 - x] = (unsigned char)(bits >> (8 * x));
    }
    sha1_blocks(h, last, blocks, ni);
    static const char hex[] = "0123456789abcdef";
    for (int x = 0; x < 20; x++) {
        unsigned char byte = (unsigned char)(h[x / 4] >> (24 - 8 * (x % 4)));
        out[2 * x] = hex[byte >> 4];
        out[2 * x + 1] = hex[byte & 15];
    }
    out[40] = '\0';
}

/* A byte buffer on the stack while it fits (a pattern's text usually does), else on the heap. */
typedef struct {
    unsigned char *p;
    size_t n, cap;
    unsigned char small[1024];
} Text;

static void
text_init(Text *t)
{
    t->p = t->small;
    t->n = 0;
    t->cap = sizeof(t->small);
}

static void
text_free(Text *t)
{
    if (t->p != t->small) {
        PyMem_Free(t->p);
    }
}

/* Room for `extra` more bytes. */
static int
text_reserve(Text *t, size_t extra)
{
    if (t->n + extra <= t->cap) {
        return 0;
    }
    size_t cap = 2 * t->cap;
    while (cap < t->n + extra) {
        cap *= 2;
    }
    unsigned char *p = PyMem_Malloc(cap);
    if (p == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    memcpy(p, t->p, t->n);
    text_free(t);
    t->p = p;
    t->cap = cap;
    return 0;
}

static inline int
text_put(Text *t, const void *data, size_t n)
{
    if (text_reserve(t, n) < 0) {
        return -1;
    }
    memcpy(t->p + t->n, data, n);
    t->n += n;
    return 0;
}

/* Append repr(symbol) as UTF-8; printable ASCII without quote or backslash is written as is. */
static int
text_repr(Text *t, PyObject *symbol)
{
    if (PyUnicode_CheckExact(symbol) && PyUnicode_IS_ASCII(symbol)) {
        const unsigned char *s = PyUnicode_1BYTE_DATA(symbol);
        Py_ssize_t n = PyUnicode_GET_LENGTH(symbol), x = 0;
        while (x < n && s[x] >= 0x20 && s[x] < 0x7f && s[x] != '\'' && s[x] != '\\') {
            x++;
        }
        if (x == n) {
            if (text_reserve(t, (size_t)n + 2) < 0) {
                return -1;
            }
            unsigned char *out = t->p + t->n;
            out[0] = '\'';
            memcpy(out + 1, s, (size_t)n);
            out[n + 1] = '\'';
            t->n += (size_t)n + 2;
            return 0;
        }
    }
    PyObject *repr = PyObject_Repr(symbol);
    if (repr == NULL) {
        return -1;
    }
    Py_ssize_t n;
    const char *utf8 = PyUnicode_AsUTF8AndSize(repr, &n);
    int rc = utf8 == NULL ? -1 : text_put(t, utf8, (size_t)n);
    Py_DECREF(repr);
    return rc;
}

/* The text str([list(event) for event in events]) is made of, appended to t. */
static int
pattern_text(Text *t, PyObject *events)
{
    PyObject *seq = PySequence_Fast(events, "events must be a sequence of sequences");
    if (seq == NULL) {
        return -1;
    }
    Py_ssize_t nev = PySequence_Fast_GET_SIZE(seq);
    int rc = text_put(t, "[", 1);
    for (Py_ssize_t e = 0; e < nev && rc == 0; e++) {
        PyObject *event = PySequence_Fast(PySequence_Fast_GET_ITEM(seq, e),
                                          "events must be a sequence of sequences");
        if (event == NULL || text_put(t, e ? ", [" : "[", e ? 3 : 1) < 0) {
            Py_XDECREF(event);
            rc = -1;
            break;
        }
        for (Py_ssize_t x = 0; x < PySequence_Fast_GET_SIZE(event) && rc == 0; x++) {
            if ((x && text_put(t, ", ", 2) < 0) ||
                text_repr(t, PySequence_Fast_GET_ITEM(event, x)) < 0) {
                rc = -1;
            }
        }
        Py_DECREF(event);
        if (rc == 0) {
            rc = text_put(t, "]", 1);
        }
    }
    Py_DECREF(seq);
    return rc < 0 ? -1 : text_put(t, "]", 1);
}

PyDoc_STRVAR(core_sha1_doc,
             "sha1(data, portable=False) -> str\n\n"
             "SHA-1 hex of bytes, by the CPU's SHA instructions when it has them, or by the\n"
             "portable code (always with portable=True): the tests check both against hashlib.");

static PyObject *
core_sha1(PyObject *Py_UNUSED(module), PyObject *args)
{
    Py_buffer data;
    int portable = 0;
    if (!PyArg_ParseTuple(args, "y*|p:sha1", &data, &portable)) {
        return NULL;
    }
    char hex[41];
    sha1_hex(data.buf, (size_t)data.len, hex, sha1_ni && !portable);
    PyBuffer_Release(&data);
    return PyUnicode_FromStringAndSize(hex, 40);
}

PyDoc_STRVAR(core_pattern_hash_doc,
             "pattern_hash(events) -> str\n\n"
             "SHA-1 hex of str([list(event) for event in events]): naming.pattern_hash.");

static PyObject *
core_pattern_hash(PyObject *Py_UNUSED(module), PyObject *events)
{
    Text text;
    text_init(&text);
    if (pattern_text(&text, events) < 0) {
        text_free(&text);
        return NULL;
    }
    char hex[41];
    sha1_hex(text.p, text.n, hex, sha1_ni);
    text_free(&text);
    return PyUnicode_FromStringAndSize(hex, 40);
}

/* A pattern's distinct symbols in first-seen order with their occurrences: the equality of a
 * dict (identity, then hash and ==) in an open-addressing table, on the stack when small. */
typedef struct {
    PyObject *symbol; /* borrowed */
    Py_hash_t hash;
    Py_ssize_t count;
} Distinct;

typedef struct {
    Distinct *v;
    Py_ssize_t n;
    int32_t *slots; /* index + 1 into v, 0 when free */
    size_t mask;
    Distinct small_v[64];
    int32_t small_slots[128];
} DistinctSet;

/* Room for `capacity` distinct symbols. */
static int
distinct_init(DistinctSet *d, Py_ssize_t capacity)
{
    size_t size = 128;
    while (size < 2 * (size_t)capacity) {
        size *= 2;
    }
    d->n = 0;
    d->mask = size - 1;
    if (size == 128) {
        d->v = d->small_v;
        d->slots = d->small_slots;
    }
    else {
        d->v = PyMem_Malloc((size_t)capacity * sizeof(Distinct));
        d->slots = PyMem_Malloc(size * sizeof(int32_t));
        if (d->v == NULL || d->slots == NULL) {
            PyMem_Free(d->v);
            PyMem_Free(d->slots);
            PyErr_NoMemory();
            return -1;
        }
    }
    memset(d->slots, 0, size * sizeof(int32_t));
    return 0;
}

static void
distinct_free(DistinctSet *d)
{
    if (d->v != d->small_v) {
        PyMem_Free(d->v);
        PyMem_Free(d->slots);
    }
}

/* Count one occurrence of symbol; -1 with an exception when it cannot be hashed or compared. */
static int
distinct_add(DistinctSet *d, PyObject *symbol)
{
    Py_hash_t hash = PyObject_Hash(symbol);
    if (hash == -1) {
        return -1;
    }
    for (size_t at = (size_t)hash & d->mask;; at = (at + 1) & d->mask) {
        int32_t slot = d->slots[at];
        if (slot == 0) {
            d->slots[at] = (int32_t)(d->n + 1);
            d->v[d->n++] = (Distinct){symbol, hash, 1};
            return 0;
        }
        Distinct *seen = &d->v[slot - 1];
        if (seen->symbol == symbol) {
            seen->count++;
            return 0;
        }
        if (seen->hash == hash) {
            int equal = PyObject_RichCompareBool(seen->symbol, symbol, Py_EQ);
            if (equal < 0) {
                return -1;
            }
            if (equal) {
                seen->count++;
                return 0;
            }
        }
    }
}

/* counts[key] += delta for a dict of ints; -1 on error. */
static int
count_add(PyObject *counts, PyObject *key, Py_ssize_t delta)
{
    PyObject *old = PyDict_GetItemWithError(counts, key);
    if (old == NULL && PyErr_Occurred()) {
        return -1;
    }
    long long value = 0;
    if (old != NULL) {
        value = PyLong_AsLongLong(old);
        if (value == -1 && PyErr_Occurred()) {
            return -1;
        }
    }
    PyObject *new = PyLong_FromLongLong(value + delta);
    if (new == NULL) {
        return -1;
    }
    int rc = PyDict_SetItem(counts, key, new);
    Py_DECREF(new);
    return rc;
}

/* obj.<name> += delta for an int attribute; -1 on error. */
static int
attr_add(PyObject *obj, PyObject *name, Py_ssize_t delta)
{
    PyObject *old = PyObject_GetAttr(obj, name);
    if (old == NULL) {
        return -1;
    }
    PyObject *by = PyLong_FromSsize_t(delta);
    PyObject *new = by == NULL ? NULL : PyNumber_Add(old, by);
    Py_DECREF(old);
    Py_XDECREF(by);
    if (new == NULL) {
        return -1;
    }
    int rc = PyObject_SetAttr(obj, name, new);
    Py_DECREF(new);
    return rc;
}

static PyObject *str_total_patterns, *str_total_symbols, *str_total_distinct, *record_kwnames;

PyDoc_STRVAR(core_learn_doc,
             "learn(patterns, frequency, members, totals, record_type, name, events) -> bool\n\n"
             "The memory store's learn of one pattern but its emotives (storage/memory.py,\n"
             "_learn, is the reference): patterns[name] = record_type(name=, pattern_data=a\n"
             "copy of the events as lists, length=, frequency=1, emotives=[]) when new, else\n"
             "its frequency + 1; each symbol's occurrences added to frequency[symbol] and 1 to\n"
             "members[symbol] per distinct symbol (both in first-seen order); the three totals\n"
             "increased. True when the pattern is new. The copied lists are not tracked by the\n"
             "garbage collector (strings only: no cycle), nor walked by it then.");

static PyObject *
core_learn(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 7) {
        PyErr_Format(PyExc_TypeError, "learn() takes 7 arguments (%zd given)", nargs);
        return NULL;
    }
    PyObject *patterns = args[0], *frequency = args[1], *members = args[2], *totals = args[3],
             *record_type = args[4], *name = args[5], *events = args[6];
    if (!PyDict_Check(patterns) || !PyDict_Check(frequency) || !PyDict_Check(members)) {
        PyErr_SetString(PyExc_TypeError, "learn(): patterns, frequency and members are dicts");
        return NULL;
    }
    PyObject *record = PyDict_GetItemWithError(patterns, name);
    if (record == NULL && PyErr_Occurred()) {
        return NULL;
    }
    Py_XINCREF(record);
    PyObject *seq = PySequence_Fast(events, "events must be a sequence of sequences");
    if (seq == NULL) {
        Py_XDECREF(record);
        return NULL;
    }
    /* The events copied as lists (kept by a new record): what is counted cannot change. */
    Py_ssize_t nev = PySequence_Fast_GET_SIZE(seq), length = 0;
    PyObject *copy = PyList_New(nev);
    DistinctSet distinct;
    distinct.v = distinct.small_v; /* distinct_free is a no-op until distinct_init */
    if (copy == NULL) {
        goto fail;
    }
    for (Py_ssize_t e = 0; e < nev; e++) {
        PyObject *event = PySequence_List(PySequence_Fast_GET_ITEM(seq, e));
        if (event == NULL) {
            goto fail;
        }
        PyList_SET_ITEM(copy, e, event);
        length += PyList_GET_SIZE(event);
    }
    if (distinct_init(&distinct, length) < 0) {
        goto fail;
    }
    for (Py_ssize_t e = 0; e < nev; e++) {
        PyObject *event = PyList_GET_ITEM(copy, e);
        for (Py_ssize_t x = 0; x < PyList_GET_SIZE(event); x++) {
            if (distinct_add(&distinct, PyList_GET_ITEM(event, x)) < 0) {
                goto fail;
            }
        }
    }
    int new = record == NULL;
    if (new) {
        for (Py_ssize_t e = 0; e < nev; e++) {
            PyObject_GC_UnTrack(PyList_GET_ITEM(copy, e));
        }
        PyObject_GC_UnTrack(copy);
        PyObject *values[5] = {name, copy, PyLong_FromSsize_t(length), PyLong_FromLong(1),
                               PyList_New(0)};
        if (values[2] != NULL && values[3] != NULL && values[4] != NULL) {
            PyObject_GC_UnTrack(values[4]); /* for dicts of floats: no cycle either */
            record = PyObject_Vectorcall(record_type, values, 0, record_kwnames);
        }
        Py_XDECREF(values[2]);
        Py_XDECREF(values[3]);
        Py_XDECREF(values[4]);
        if (record == NULL || PyDict_SetItem(patterns, name, record) < 0) {
            goto fail;
        }
    }
    else if (attr_add(record, str_frequency_attr, 1) < 0) {
        goto fail;
    }
    /* A symbol's occurrences at once: the same counts as one at a time, in the same order. */
    for (Py_ssize_t s = 0; s < distinct.n; s++) {
        Distinct *d = &distinct.v[s];
        if (count_add(frequency, d->symbol, d->count) < 0 || count_add(members, d->symbol, 1) < 0) {
            goto fail;
        }
    }
    if (attr_add(totals, str_total_patterns, 1) < 0 ||
        attr_add(totals, str_total_symbols, length) < 0 ||
        attr_add(totals, str_total_distinct, distinct.n) < 0) {
        goto fail;
    }
    distinct_free(&distinct);
    Py_DECREF(record);
    Py_DECREF(copy);
    Py_DECREF(seq);
    return PyBool_FromLong(new);
fail:
    distinct_free(&distinct);
    Py_XDECREF(record);
    Py_XDECREF(copy);
    Py_DECREF(seq);
    return NULL;
}

/* ------------------------------------------------------------------------------------------
 * Types and module.
 */

static PyMethodDef Core_methods[] = {
    {"add", (PyCFunction)(void (*)(void))Core_add, METH_FASTCALL, Core_add_doc},
    {"clear", (PyCFunction)Core_clear, METH_NOARGS, "clear() -> None\n\nForget every pattern."},
    {"match", (PyCFunction)(void (*)(void))Core_match, METH_VARARGS | METH_KEYWORDS,
     Core_match_doc},
    {NULL, NULL, 0, NULL},
};

static PySequenceMethods Core_as_sequence = {.sq_length = (lenfunc)Core_len};

static PyTypeObject CoreType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "processor_image.engine._core.Core",
    .tp_basicsize = sizeof(Core),
    .tp_dealloc = (destructor)Core_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Learned patterns, interned, with the inverted index the matcher starts from.",
    .tp_methods = Core_methods,
    .tp_as_sequence = &Core_as_sequence,
    .tp_new = Core_new,
};

static PyMethodDef Run_methods[] = {
    {"names", (PyCFunction)Run_names, METH_NOARGS,
     "names() -> list[str]\n\nThe surviving patterns' names."},
    {"universe", (PyCFunction)Run_universe, METH_NOARGS,
     "universe() -> list[str]\n\nEvery symbol of the survivors' matches and presents."},
    {"predictions", (PyCFunction)Run_predictions, METH_VARARGS, Run_predictions_doc},
    {NULL, NULL, 0, NULL},
};

static PySequenceMethods Run_as_sequence = {.sq_length = (lenfunc)Run_len};

static PyTypeObject RunType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "processor_image.engine._core.Run",
    .tp_basicsize = sizeof(Run),
    .tp_dealloc = (destructor)Run_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "The candidates of one state that reached the recall threshold.",
    .tp_methods = Run_methods,
    .tp_as_sequence = &Run_as_sequence,
};

static PyObject *
core_round12(PyObject *Py_UNUSED(module), PyObject *arg)
{
    double x = PyFloat_AsDouble(arg), out;
    if (x == -1.0 && PyErr_Occurred()) {
        return NULL;
    }
    if (round12(x, &out) < 0) {
        return NULL;
    }
    return PyFloat_FromDouble(out);
}

static PyMethodDef module_methods[] = {
    {"get_matching_blocks", (PyCFunction)(void (*)(void))core_get_matching_blocks,
     METH_VARARGS | METH_KEYWORDS,
     "get_matching_blocks(a, b, autojunk=True)\n\n"
     "SequenceMatcher(None, a, b, autojunk).get_matching_blocks() as (i, j, n) tuples."},
    {"get_opcodes", (PyCFunction)(void (*)(void))core_get_opcodes, METH_VARARGS | METH_KEYWORDS,
     "get_opcodes(a, b, autojunk=True)\n\nSequenceMatcher(None, a, b, autojunk).get_opcodes()."},
    {"round12", core_round12, METH_O, "round12(x)\n\nround(x, 12), as the core computes it."},
    {"json", core_json, METH_O, core_json_doc},
    {"pattern_hash", core_pattern_hash, METH_O, core_pattern_hash_doc},
    {"sha1", core_sha1, METH_VARARGS, core_sha1_doc},
    {"learn", (PyCFunction)(void (*)(void))core_learn, METH_FASTCALL, core_learn_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef core_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "processor_image.engine._core",
    .m_doc = "The engine's compiled core: matching and ensemble metrics (see core.py).",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC
PyInit__core(void)
{
    if (PyType_Ready(&CoreType) < 0 || PyType_Ready(&RunType) < 0) {
        return NULL;
    }
    PyObject *builtins = PyImport_ImportModule("builtins");
    if (builtins == NULL) {
        return NULL;
    }
    py_round = PyObject_GetAttrString(builtins, "round");
    Py_DECREF(builtins);
    if (py_round == NULL) {
        return NULL;
    }
    str_frequency_attr = PyUnicode_InternFromString("frequency");
    str_emotives_attr = PyUnicode_InternFromString("emotives");
    if (!str_frequency_attr || !str_emotives_attr) {
        return NULL;
    }
    sha1_ni = sha1_has_ni();
    str_total_patterns = PyUnicode_InternFromString("total_pattern_frequencies");
    str_total_symbols = PyUnicode_InternFromString("total_symbol_frequencies");
    str_total_distinct = PyUnicode_InternFromString("total_symbols_in_patterns_frequencies");
    record_kwnames = Py_BuildValue("(sssss)", "name", "pattern_data", "length", "frequency",
                                   "emotives");
    if (!str_total_patterns || !str_total_symbols || !str_total_distinct || !record_kwnames) {
        return NULL;
    }
    PyObject *module = PyModule_Create(&core_module);
    if (module == NULL) {
        return NULL;
    }
    Py_INCREF(&CoreType);
    Py_INCREF(&RunType);
    if (PyModule_AddObject(module, "Core", (PyObject *)&CoreType) < 0 ||
        PyModule_AddObject(module, "Run", (PyObject *)&RunType) < 0 ||
        PyModule_AddIntConstant(module, "ABI", CORE_ABI) < 0 ||
        PyModule_AddObjectRef(module, "SHA_NI", sha1_ni ? Py_True : Py_False) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
