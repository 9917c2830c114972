/* A Context object's fields, for recycling the context copies of finished handles
 * (qloop/_cy/loop.pxi, _recycled_context).
 *
 * CPython 3.11 to 3.15 lay a Context out the same way: the object header, the context it
 * replaced while it is entered, its variables (an immutable mapping that copies share), its
 * weak-reference list and its "entered" flag.  The header is internal, so the layout is
 * restated here, and the core checks at import that Context objects behave as this layout
 * says (_context_layout_ok); when they do not, it only uses PyContext_CopyCurrent(). */
#ifndef QLOOP_CONTEXT_H
#define QLOOP_CONTEXT_H

#include <Python.h>

typedef struct {
    PyObject_HEAD
    PyObject *prev;
    PyObject *vars;
    PyObject *weakreflist;
    int entered;
} ql_context;

/* the thread's current Context, or NULL before its first use (borrowed) */
static inline PyObject *ql_context_current(void) { return PyThreadState_Get()->context; }

/* the variables of ctx (borrowed) */
static inline PyObject *ql_context_vars(PyObject *ctx) { return ((ql_context *)ctx)->vars; }

/* nothing but the caller's one reference reaches ctx, nobody watches it and it is not entered */
static inline int ql_context_private(PyObject *ctx)
{
    ql_context *c = (ql_context *)ctx;
    return Py_REFCNT(ctx) == 1 && c->weakreflist == NULL && !c->entered;
}

/* give ctx the variables vars; returns its old ones (a reference the caller must drop) */
static inline PyObject *ql_context_swap_vars(PyObject *ctx, PyObject *vars)
{
    ql_context *c = (ql_context *)ctx;
    PyObject *old = c->vars;
    Py_INCREF(vars);
    c->vars = vars;
    return old;
}

static inline int ql_context_entered(PyObject *ctx) { return ((ql_context *)ctx)->entered; }
static inline PyObject *ql_context_weakreflist(PyObject *ctx)
{
    return ((ql_context *)ctx)->weakreflist;
}

#endif
