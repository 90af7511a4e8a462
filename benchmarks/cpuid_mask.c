/*
 * A CPUID mask for one process tree (Linux, x86-64), preloaded by `python -m benchmarks.cpu_mask`.
 *
 * Libraries choose their kernels from the CPUID instruction (ONNX Runtime's MLAS: AVX-512 VNNI,
 * AVX-VNNI, AVX-512, AVX2 int8 paths). To time what a CPU without VNNI runs, this library asks the
 * kernel to make CPUID fault in this process (arch_prctl ARCH_SET_CPUID, on CPUs with CPUID faulting),
 * answers each faulting CPUID itself with the real values less the features of the level named by
 * JRC_CPUID_MASK, and steps over the instruction. Children inherit it through LD_PRELOAD.
 *
 *   avx2    hide AVX-512 (every subset), AVX10, AVX-VNNI and AMX: an AVX2 + FMA CPU
 *   avx512  hide VNNI (AVX-512 and AVX forms), AVX10, BF16/FP16, AMX and the AVX-512 subsets after
 *           Skylake-SP's: AVX-512 F/CD/BW/DQ/VL without VNNI
 *
 * What starts before this library's constructor keeps the real CPU: the dynamic loader and glibc's
 * own choices (its string functions, its hwcaps library folders), and statically linked programs.
 * Libraries that ask CPUID when they load or later (ONNX Runtime, numpy, OpenCV, PyTorch) see the mask.
 *
 * The answers come through SIGSEGV (CPUID faulting raises #GP, delivered with si_code SI_KERNEL), so
 * the program's own use of SIGSEGV is kept working: sigaction() and signal() for SIGSEGV are
 * interposed, the mask's handler stays installed and hands every other SIGSEGV to the program's
 * handler as the kernel would have (its flags and mask honoured), and SIGSEGV is never blocked
 * (sigprocmask/pthread_sigmask are interposed too: the kernel kills a thread whose CPUID faults while
 * SIGSEGV is blocked). A program that installs handlers through sigset() or bsd_signal() bypasses this.
 *
 * Leaf 7 bits as Intel's SDM vol. 2A (CPUID) and AMD's APM vol. 3 number them.
 */
#define _GNU_SOURCE
#include <asm/prctl.h>
#include <cpuid.h>
#include <dlfcn.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#define BIT(n) (1u << (n))

/* leaf 7, sub-leaf 0 */
#define L7_EBX_AVX512_ALL (BIT(16) | BIT(17) | BIT(21) | BIT(26) | BIT(27) | BIT(28) | BIT(30) | BIT(31))
#define L7_EBX_AVX512_LATER (BIT(21) | BIT(26) | BIT(27))                    /* IFMA, PF, ER */
#define L7_ECX_AVX512_LATER (BIT(1) | BIT(6) | BIT(11) | BIT(12) | BIT(14))  /* VBMI, VBMI2, VNNI, BITALG, VPOPCNTDQ */
/* 4VNNIW, 4FMAPS, VP2INTERSECT, AMX-BF16, AVX512-FP16, AMX-TILE, AMX-INT8 */
#define L7_EDX_LATER (BIT(2) | BIT(3) | BIT(8) | BIT(22) | BIT(23) | BIT(24) | BIT(25))
/* leaf 7, sub-leaf 1: AVX-VNNI, AVX512-BF16, AMX-FP16, AVX-IFMA */
#define L7S1_EAX_LATER (BIT(4) | BIT(5) | BIT(21) | BIT(23))
/* AVX-VNNI-INT8, AVX-NE-CONVERT, AMX-COMPLEX, AVX-VNNI-INT16, AVX10 (its leaf 0x24 then goes unread) */
#define L7S1_EDX_LATER (BIT(4) | BIT(5) | BIT(8) | BIT(10) | BIT(19))

static int level; /* 1: avx2, 2: avx512 */
static volatile sig_atomic_t installed;
static struct sigaction program_handler; /* what the program asked SIGSEGV to do (SIG_DFL at start) */

typedef int (*sigaction_fn)(int, const struct sigaction *, struct sigaction *);
typedef sighandler_t (*signal_fn)(int, sighandler_t);
typedef int (*sigmask_fn)(int, const sigset_t *, sigset_t *);

static void *next_symbol(const char *name) { return dlsym(RTLD_NEXT, name); }

static int real_sigaction(int sig, const struct sigaction *act, struct sigaction *old) {
    static sigaction_fn next;
    if (next == NULL)
        next = (sigaction_fn)next_symbol("sigaction");
    return next(sig, act, old);
}

static void set_faulting(int on) { syscall(SYS_arch_prctl, ARCH_SET_CPUID, on ? 0 : 1); }

static void masked_cpuid(unsigned leaf, unsigned sub, unsigned r[4]) {
    set_faulting(0);
    __cpuid_count(leaf, sub, r[0], r[1], r[2], r[3]);
    set_faulting(1);
    if (leaf == 7 && sub == 0) {
        r[1] &= ~(level == 1 ? L7_EBX_AVX512_ALL : L7_EBX_AVX512_LATER);
        r[2] &= ~L7_ECX_AVX512_LATER;
        r[3] &= ~L7_EDX_LATER;
    } else if (leaf == 7 && sub == 1) {
        r[0] &= ~L7S1_EAX_LATER;
        r[3] &= ~L7S1_EDX_LATER;
    }
}

static void die_of(int sig) {
    struct sigaction dfl;
    sigset_t only;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    real_sigaction(sig, &dfl, NULL);
    sigemptyset(&only);
    sigaddset(&only, sig);
    syscall(SYS_rt_sigprocmask, SIG_UNBLOCK, &only, NULL, 8);
    raise(sig);
}

/* A SIGSEGV that is not a CPUID fault: what the program asked for, as the kernel would deliver it. */
static void pass_on(int sig, siginfo_t *info, void *context) {
    struct sigaction h = program_handler;
    if (!(h.sa_flags & SA_SIGINFO) && h.sa_handler == SIG_IGN) {
        if (info->si_code <= 0)
            return; /* sent by a process: ignored, as the program asked */
        die_of(sig); /* a real fault cannot be ignored */
        return;
    }
    if (!(h.sa_flags & SA_SIGINFO) && h.sa_handler == SIG_DFL) {
        die_of(sig);
        return;
    }
    if (h.sa_flags & SA_RESETHAND) {
        memset(&program_handler, 0, sizeof program_handler);
        program_handler.sa_handler = SIG_DFL;
    }
    sigset_t block, saved;
    block = h.sa_mask;
    sigdelset(&block, SIGSEGV);
    syscall(SYS_rt_sigprocmask, SIG_BLOCK, &block, &saved, 8);
    if (h.sa_flags & SA_SIGINFO)
        h.sa_sigaction(sig, info, context);
    else
        h.sa_handler(sig);
    syscall(SYS_rt_sigprocmask, SIG_SETMASK, &saved, NULL, 8);
}

static void on_fault(int sig, siginfo_t *info, void *context) {
    ucontext_t *uc = context;
    greg_t *g = uc->uc_mcontext.gregs;
    if (info->si_code != SI_KERNEL) { /* a page fault (SEGV_MAPERR, SEGV_ACCERR, …) or sent by a process */
        pass_on(sig, info, context);
        return;
    }
    const unsigned char *ip = (const unsigned char *)g[REG_RIP];
    if (ip[0] != 0x0f || ip[1] != 0xa2) { /* another general-protection fault */
        pass_on(sig, info, context);
        return;
    }
    unsigned r[4];
    masked_cpuid((unsigned)g[REG_RAX], (unsigned)g[REG_RCX], r);
    g[REG_RAX] = r[0];
    g[REG_RBX] = r[1];
    g[REG_RCX] = r[2];
    g[REG_RDX] = r[3];
    g[REG_RIP] += 2;
}

/* The program's SIGSEGV handler is kept aside; the mask's stays installed. */
int sigaction(int sig, const struct sigaction *act, struct sigaction *old) {
    if (sig != SIGSEGV || !installed)
        return real_sigaction(sig, act, old);
    struct sigaction previous = program_handler;
    if (act != NULL)
        program_handler = *act;
    if (old != NULL)
        *old = previous;
    return 0;
}

sighandler_t signal(int sig, sighandler_t handler) {
    static signal_fn next;
    if (sig != SIGSEGV || !installed) {
        if (next == NULL)
            next = (signal_fn)next_symbol("signal");
        return next(sig, handler);
    }
    struct sigaction act, old;
    memset(&act, 0, sizeof act);
    act.sa_handler = handler;
    act.sa_flags = SA_RESTART;
    sigemptyset(&act.sa_mask);
    sigaction(sig, &act, &old);
    return old.sa_handler;
}

/* SIGSEGV stays deliverable: a blocked fault signal kills the thread whose CPUID faults. */
static int without_segv(sigmask_fn next, int how, const sigset_t *set, sigset_t *old) {
    if (set == NULL || !installed || how == SIG_UNBLOCK || !sigismember(set, SIGSEGV))
        return next(how, set, old);
    sigset_t copy = *set;
    sigdelset(&copy, SIGSEGV);
    return next(how, &copy, old);
}

int sigprocmask(int how, const sigset_t *set, sigset_t *old) {
    static sigmask_fn next;
    if (next == NULL)
        next = (sigmask_fn)next_symbol("sigprocmask");
    return without_segv(next, how, set, old);
}

int pthread_sigmask(int how, const sigset_t *set, sigset_t *old) {
    static sigmask_fn next;
    if (next == NULL)
        next = (sigmask_fn)next_symbol("pthread_sigmask");
    return without_segv(next, how, set, old);
}

__attribute__((constructor)) static void install(void) {
    const char *want = getenv("JRC_CPUID_MASK");
    if (want == NULL || (strcmp(want, "avx2") != 0 && strcmp(want, "avx512") != 0)) {
        fprintf(stderr, "cpuid mask: JRC_CPUID_MASK must be avx2 or avx512 (is %s)\n", want ? want : "unset");
        _exit(3);
    }
    level = strcmp(want, "avx2") == 0 ? 1 : 2;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_fault;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER | SA_ONSTACK; /* on the program's alternate stack when it sets one */
    sigemptyset(&sa.sa_mask);
    program_handler.sa_handler = SIG_DFL;
    if (real_sigaction(SIGSEGV, &sa, NULL) != 0 || syscall(SYS_arch_prctl, ARCH_SET_CPUID, 0) != 0) {
        fprintf(stderr, "cpuid mask: this CPU or kernel offers no CPUID faulting (arch_prctl ARCH_SET_CPUID)\n");
        _exit(3);
    }
    installed = 1;
}
