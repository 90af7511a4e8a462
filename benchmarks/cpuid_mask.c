/*
 * A CPUID mask for one process tree (Linux, x86-64), preloaded by `python -m benchmarks.cpu_mask`.
 *
 * Libraries choose their kernels from the CPUID instruction (ONNX Runtime's MLAS: AVX-512 VNNI,
 * AVX-VNNI, AVX-512, AVX2 int8 paths). To time what a CPU without VNNI runs, this library asks the
 * kernel to make CPUID fault in this process (arch_prctl ARCH_SET_CPUID, on CPUs with CPUID faulting),
 * answers each faulting CPUID itself with the real values less the features of the level named by
 * JRC_CPUID_MASK, and steps over the instruction. Children inherit it through LD_PRELOAD.
 *
 *   avx2    hide AVX-512 (every subset), AVX-VNNI and AMX: an AVX2 + FMA CPU
 *   avx512  hide VNNI (AVX-512 and AVX forms), BF16/FP16, AMX and the later AVX-512 subsets:
 *           AVX-512 F/CD/BW/DQ/VL without VNNI
 *
 * A program that installs its own SIGSEGV handler (Python's -X faulthandler, pytest) would take the
 * faults by which the mask answers CPUID: sigaction() and signal() for SIGSEGV are interposed, so the
 * mask's handler stays in place and hands every fault that is not a CPUID to the program's handler.
 *
 * Leaf 7 bits as Intel's SDM vol. 2A (CPUID) and AMD's APM vol. 3 number them.
 */
#define _GNU_SOURCE
#include <asm/prctl.h>
#include <cpuid.h>
#include <dlfcn.h>
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
#define L7_EBX_AVX512_LATER (BIT(21) | BIT(26) | BIT(27))              /* IFMA, PF, ER */
#define L7_ECX_AVX512_LATER (BIT(1) | BIT(6) | BIT(11) | BIT(12) | BIT(14)) /* VBMI, VBMI2, VNNI, BITALG, VPOPCNTDQ */
#define L7_EDX_LATER (BIT(2) | BIT(3) | BIT(8) | BIT(22) | BIT(23) | BIT(24) | BIT(25)) /* 4VNNIW, 4FMAPS, VP2INTERSECT, AMX-BF16, FP16, AMX-TILE, AMX-INT8 */
/* leaf 7, sub-leaf 1 */
#define L7S1_EAX_LATER (BIT(4) | BIT(5) | BIT(23))  /* AVX-VNNI, AVX512-BF16, AVX-IFMA */
#define L7S1_EDX_LATER (BIT(4) | BIT(5) | BIT(10))  /* AVX-VNNI-INT8, AVX-NE-CONVERT, AVX-VNNI-INT16 */

static int level; /* 1: avx2, 2: avx512 */
static int installed;
static struct sigaction program_handler; /* what the program asked SIGSEGV to do (SIG_DFL at start) */

typedef int (*sigaction_fn)(int, const struct sigaction *, struct sigaction *);

static int real_sigaction(int sig, const struct sigaction *act, struct sigaction *old) {
    static sigaction_fn next;
    if (next == NULL)
        next = (sigaction_fn)dlsym(RTLD_NEXT, "sigaction");
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

/* A fault that is not a CPUID: what the program asked for, or the default (the process dies). */
static void pass_on(int sig, siginfo_t *info, void *context) {
    struct sigaction h = program_handler;
    if (h.sa_flags & SA_SIGINFO) {
        h.sa_sigaction(sig, info, context);
    } else if (h.sa_handler != SIG_DFL && h.sa_handler != SIG_IGN) {
        h.sa_handler(sig);
    } else {
        struct sigaction dfl;
        memset(&dfl, 0, sizeof dfl);
        dfl.sa_handler = SIG_DFL;
        real_sigaction(sig, &dfl, NULL); /* returning re-runs the faulting instruction, which now kills */
    }
}

static void on_fault(int sig, siginfo_t *info, void *context) {
    ucontext_t *uc = context;
    greg_t *g = uc->uc_mcontext.gregs;
    const unsigned char *ip = (const unsigned char *)g[REG_RIP];
    if (info->si_code <= 0 || ip[0] != 0x0f || ip[1] != 0xa2) { /* sent by a process, or not CPUID */
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
    if (old != NULL)
        *old = program_handler;
    if (act != NULL)
        program_handler = *act;
    return 0;
}

sighandler_t signal(int sig, sighandler_t handler) {
    struct sigaction act, old;
    memset(&act, 0, sizeof act);
    act.sa_handler = handler;
    act.sa_flags = SA_RESTART;
    sigemptyset(&act.sa_mask);
    if (sigaction(sig, &act, &old) != 0)
        return SIG_ERR;
    return old.sa_handler;
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
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    program_handler.sa_handler = SIG_DFL;
    if (real_sigaction(SIGSEGV, &sa, NULL) != 0 || syscall(SYS_arch_prctl, ARCH_SET_CPUID, 0) != 0) {
        fprintf(stderr, "cpuid mask: this CPU or kernel offers no CPUID faulting (arch_prctl ARCH_SET_CPUID)\n");
        _exit(3);
    }
    installed = 1;
}
