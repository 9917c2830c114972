/* GLib's main-context API for the compiled core, loaded at run time with dlopen so that
 * qloop imports (and its wheel installs) without GLib.  When the build found glib.h through
 * pkg-config (QLOOP_HAVE_GLIB_H), the types and function-pointer types come from it, so the
 * compiler checks them against the real prototypes. */
#ifndef QLOOP_GLIB_H
#define QLOOP_GLIB_H

#include <dlfcn.h>
#include <stddef.h>

#ifdef QLOOP_HAVE_GLIB_H
#include <glib.h>
typedef GPollFD ql_GPollFD;
typedef GMainContext ql_GMainContext;
typedef __typeof__(&g_main_context_default) ql_default_fn;
typedef __typeof__(&g_main_context_acquire) ql_acquire_fn;
typedef __typeof__(&g_main_context_release) ql_release_fn;
typedef __typeof__(&g_main_context_prepare) ql_prepare_fn;
typedef __typeof__(&g_main_context_query) ql_query_fn;
typedef __typeof__(&g_main_context_check) ql_check_fn;
typedef __typeof__(&g_main_context_dispatch) ql_dispatch_fn;
#else
typedef struct { int fd; unsigned short events; unsigned short revents; } ql_GPollFD;
typedef struct _GMainContext ql_GMainContext;
typedef ql_GMainContext *(*ql_default_fn)(void);
typedef int (*ql_acquire_fn)(ql_GMainContext *);
typedef void (*ql_release_fn)(ql_GMainContext *);
typedef int (*ql_prepare_fn)(ql_GMainContext *, int *);
typedef int (*ql_query_fn)(ql_GMainContext *, int, int *, ql_GPollFD *, int);
typedef int (*ql_check_fn)(ql_GMainContext *, int, ql_GPollFD *, int);
typedef void (*ql_dispatch_fn)(ql_GMainContext *);
#endif

typedef struct {
    ql_default_fn context_default;
    ql_acquire_fn acquire;
    ql_release_fn release;
    ql_prepare_fn prepare;
    ql_query_fn query;
    ql_check_fn check;
    ql_dispatch_fn dispatch;
} ql_glib_api;

/* 0 on success, -1 if libglib-2.0 or one of its symbols is missing. */
static int ql_glib_load(ql_glib_api *api)
{
    void *h = dlopen("libglib-2.0.so.0", RTLD_NOW | RTLD_GLOBAL);
    if (!h) {
        return -1;
    }
    api->context_default = (ql_default_fn)dlsym(h, "g_main_context_default");
    api->acquire = (ql_acquire_fn)dlsym(h, "g_main_context_acquire");
    api->release = (ql_release_fn)dlsym(h, "g_main_context_release");
    api->prepare = (ql_prepare_fn)dlsym(h, "g_main_context_prepare");
    api->query = (ql_query_fn)dlsym(h, "g_main_context_query");
    api->check = (ql_check_fn)dlsym(h, "g_main_context_check");
    api->dispatch = (ql_dispatch_fn)dlsym(h, "g_main_context_dispatch");
    if (!api->context_default || !api->acquire || !api->release || !api->prepare ||
        !api->query || !api->check || !api->dispatch) {
        return -1;
    }
    return 0;
}

#endif
