# The core's clocks and timeouts (docs/timers-and-clocks.md).  Twin of qloop/_py/clock.py;
# included by qloop/_core.pyx.

# --------------------------------------------------------------------------------------------
# Timeouts (docs/timers-and-clocks.md, "Deadlines and timeouts")

cdef inline int64_t _soonest(int64_t a, int64_t b) noexcept nogil:
    # unsigned min: -1 is infinity
    return a if <uint64_t>a <= <uint64_t>b else b


def soonest_timeout(a, b):
    """``qemu_soonest_timeout``: the smaller of two timeouts where -1 means infinite."""
    cdef int64_t x = _int64_arg(a, "a"), y = _int64_arg(b, "b")
    return _soonest(x, y)


cdef inline int64_t _ns_to_ms(int64_t ns) noexcept nogil:
    if ns < 0:
        return -1
    if ns == 0:
        return 0
    ns = (ns - 1) // 1000000 + 1  # ceil without overflow
    return ns if ns < INT32_MAX else INT32_MAX


def timeout_ns_to_ms(ns):
    """``qemu_timeout_ns_to_ms``: -1 stays -1, 0 is 0, otherwise rounded up, capped at INT32_MAX."""
    value = _int_arg(ns, "ns")
    if value > INT64_MAX:
        return INT32_MAX
    if value < -1:
        return -1
    return _ns_to_ms(value)


# --------------------------------------------------------------------------------------------
# Clocks (docs/timers-and-clocks.md): VIRTUAL starts at 0 and disabled; while enabled it
# advances with the monotonic clock, while disabled (or in manual mode) it is frozen.

cdef int _clock_enabled[4]
_clock_enabled[0] = 1
_clock_enabled[1] = 0
_clock_enabled[2] = 1
_clock_enabled[3] = 1
cdef int64_t _virtual_base = 0
cdef int64_t _virtual_start = 0
cdef bint _manual = False
cdef int64_t _manual_ns = 0
_clock_lock = threading.Lock()
# Every open AioContext, so clock changes can notify their timer lists.
_contexts = weakref.WeakSet()


cdef inline int64_t _now_monotonic() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <int64_t>ts.tv_sec * 1000000000 + ts.tv_nsec


cdef inline int64_t _now_realtime() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_REALTIME, &ts)
    return <int64_t>ts.tv_sec * 1000000000 + ts.tv_nsec


cdef inline int64_t _virtual_now() noexcept nogil:
    if _manual:
        return _manual_ns
    if _clock_enabled[1]:
        return _virtual_base + (_now_monotonic() - _virtual_start)
    return _virtual_base


cdef inline int64_t _clock_now(int clock) noexcept nogil:
    if clock == 0:
        return _now_monotonic()
    if clock == 2:
        return _now_realtime()
    return _virtual_now()


def clock_get_ns(clock):
    """``qemu_clock_get_ns``: the current time of ``clock`` in nanoseconds."""
    return _clock_now(_clock_of(clock))


def clock_get_us(clock):
    """``qemu_clock_get_us``."""
    return _clock_now(_clock_of(clock)) // SCALE_US


def clock_get_ms(clock):
    """``qemu_clock_get_ms``."""
    return _clock_now(_clock_of(clock)) // SCALE_MS


def clock_is_enabled(clock):
    """Whether timers on ``clock`` run and bound the wait (VIRTUAL starts disabled)."""
    return bool(_clock_enabled[_clock_of(clock)])


def clock_enable(clock, enabled):
    """``qemu_clock_enable``.  Enabling notifies every context so it recomputes its deadline.

    Unlike QEMU, disabling does not wait for a concurrent run of that clock's timers.
    """
    global _virtual_base, _virtual_start
    cdef int c = _clock_of(clock)
    cdef bint on = bool(enabled)
    with _clock_lock:
        if bool(_clock_enabled[c]) == on:
            return
        if c == 1 and not _manual:
            if on:
                _virtual_start = _now_monotonic()
            else:
                _virtual_base = _virtual_now()
        _clock_enabled[c] = on
    if on:
        for ctx in list(_contexts):
            (<AioContext>ctx)._notify()


def clock_set_manual(manual):
    """Freeze VIRTUAL (and VIRTUAL_RT) so they move only by ``clock_advance_virtual_time``."""
    global _manual, _manual_ns, _virtual_base, _virtual_start
    cdef bint on = bool(manual)
    with _clock_lock:
        if on == _manual:
            return
        if on:
            _manual_ns = _virtual_now()
            _manual = True
        else:
            _virtual_base = _manual_ns
            _virtual_start = _now_monotonic()
            _manual = False
    for ctx in list(_contexts):
        (<AioContext>ctx)._notify()


def clock_is_manual():
    """Whether VIRTUAL moves only by ``clock_advance_virtual_time`` (``clock_set_manual``)."""
    return _manual


def _virtual_deadline():
    """ns until the next VIRTUAL timer of any open context (-1 none, 0 due)."""
    cdef int64_t soonest = -1, e, delta
    for c in list(_contexts):
        if not (<AioContext>c)._closed:
            e = (<AioContext>c).tl1.head_expire()
            if e >= 0 and (soonest < 0 or e < soonest):
                soonest = e
    if soonest < 0:
        return -1
    delta = soonest - _virtual_now()
    return delta if delta > 0 else 0


def clock_advance_virtual_time(dest_ns):
    """Step the manual VIRTUAL clock to ``dest_ns`` (qtest's clock warp).

    VIRTUAL moves to each pending VIRTUAL deadline up to ``dest_ns`` in turn, running the due
    VIRTUAL timers of every open AioContext (in the calling thread) at each step; then it is
    set to ``dest_ns``.  Returns the new VIRTUAL time.  Timer exceptions are raised at the end
    (the first one; see ``AioContext.set_exception_handler``).
    """
    global _manual_ns
    cdef int64_t dest = _int64_arg(dest_ns, "dest_ns")
    cdef int64_t soonest, e
    cdef bint ran
    cdef AioContext ctx
    if not _manual:
        raise RuntimeError("clock_advance_virtual_time needs clock_set_manual(True)")
    if dest < _manual_ns:
        raise ValueError(f"dest_ns {dest} is before the current VIRTUAL time {_manual_ns}")
    errors = []
    while True:
        soonest = -1
        ctxs = [c for c in list(_contexts) if not (<AioContext>c)._closed]
        for c in ctxs:
            e = (<AioContext>c).tl1.head_expire()
            if e >= 0 and (soonest < 0 or e < soonest):
                soonest = e
        if soonest < 0 or soonest > dest:
            break
        if soonest > _manual_ns:
            _manual_ns = soonest
        ran = False
        for c in ctxs:
            ctx = <AioContext>c
            saved = ctx.errors
            ctx.errors = errors
            try:
                ran |= ctx.tl1.run()
            finally:
                ctx.errors = saved
        if not ran:
            break  # VIRTUAL is disabled: its timers never run (docs/timers-and-clocks.md)
    _manual_ns = dest
    for c in list(_contexts):
        (<AioContext>c)._notify()
    if errors:
        _raise_errors(errors)
    return dest


cdef int _virtual_jump(AioContext own, int64_t dest) except -1:
    """A virtual-time event loop's autojump (docs/virtual-time.md): move the manual VIRTUAL
    clock forward to ``dest`` (never back) without running any timer here.  ``own`` runs its
    due timers in its next poll; another context whose VIRTUAL timers fall due is woken to run
    them in its own thread."""
    global _manual_ns
    cdef AioContext ctx
    cdef int64_t e
    cdef list refs
    if not _manual or dest <= _manual_ns:
        return 0
    _manual_ns = dest
    # The WeakSet's own set of weak references, snapshot as a list in C: this runs at every
    # jump, and iterating the WeakSet itself is a Python generator.
    refs = list(_contexts.data)
    if len(refs) > 1:
        for ref in refs:
            c = ref()
            if c is None:
                continue
            ctx = <AioContext>c
            if ctx is own or ctx._closed or (ctx.tl1.n == 0 and ctx.tl3.n == 0):
                continue
            e = _soonest(ctx.tl1.head_expire(), ctx.tl3.head_expire())
            if 0 <= e <= dest:
                ctx._notify()
    return 0
