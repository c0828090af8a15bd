/* A qemu TCG plugin (plugin API version 1, qemu 7.2) that counts the A64 instructions a guest
 * executes, by class, per vCPU (in user mode: per guest thread), between markers the guest sets.
 *
 * Each instruction is classified once, when qemu translates its block; a per-block execution
 * callback adds the block's class counts to its vCPU's totals while recording is on. The guest
 * switches recording with a syscall no program makes otherwise: sched_get_priority_max (125 on
 * aarch64) with an invalid policy MAGIC | region << 1 | stop. At a start the counts are zeroed;
 * at a stop, every vCPU's counts since the start are appended to the output file as
 * "region R vcpu V n0 n1 ...".
 *
 * Blocks that hold a spin-wait hint (YIELD, WFE, WFI, ISB) count as "wait": threads polling
 * for work, which cost time on a board only as idle cores do. The last column counts system
 * calls (futex waits and wakes of a thread pool, mostly): how often threads synchronize.
 *
 * Built by edgekd on first use with the host's C compiler; the declarations below are the few
 * of qemu's plugin API (include/qemu/qemu-plugin.h) that it uses, so no qemu headers are needed.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef uint64_t qemu_plugin_id_t;
struct qemu_plugin_tb;
struct qemu_plugin_insn;
enum qemu_plugin_cb_flags { QEMU_PLUGIN_CB_NO_REGS, QEMU_PLUGIN_CB_R_REGS, QEMU_PLUGIN_CB_RW_REGS };
typedef void (*tb_trans_cb)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);
typedef void (*vcpu_udata_cb)(unsigned int vcpu_index, void *userdata);
typedef void (*syscall_cb)(qemu_plugin_id_t id, unsigned int vcpu_index, int64_t num, uint64_t a1, uint64_t a2,
                           uint64_t a3, uint64_t a4, uint64_t a5, uint64_t a6, uint64_t a7, uint64_t a8);
extern void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, tb_trans_cb cb);
extern void qemu_plugin_register_vcpu_tb_exec_cb(struct qemu_plugin_tb *tb, vcpu_udata_cb cb,
                                                 enum qemu_plugin_cb_flags flags, void *userdata);
extern void qemu_plugin_register_vcpu_syscall_cb(qemu_plugin_id_t id, syscall_cb cb);
extern size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
extern struct qemu_plugin_insn *qemu_plugin_tb_get_insn(const struct qemu_plugin_tb *tb, size_t idx);
extern const void *qemu_plugin_insn_data(const struct qemu_plugin_insn *insn);
extern size_t qemu_plugin_insn_size(const struct qemu_plugin_insn *insn);

__attribute__((visibility("default"))) int qemu_plugin_version = 1;

/* the classes, in the order edgekd.emulation.profile.CLASSES names them */
enum {
    FMLA_F32, FMLA_F16, DOT_I8, MMLA_I8, MUL_INT, SIMD_OTHER, LDST_SIMD, LDST_SCALAR, BRANCH, INT_OTHER, WAIT,
    SYSCALL, NCLASSES
};
#define MAX_VCPUS 1024
#define MARKER_SYSCALL 125 /* aarch64 sched_get_priority_max */
#define MARKER_MAGIC 0x45440000u
#define MARKER_MASK 0xffff0000u

static uint64_t counts[MAX_VCPUS][NCLASSES];
static volatile int recording;
static FILE *out;

static int fp_or_int_mul(uint32_t i)
{
    uint32_t u = (i >> 29) & 1, size = (i >> 22) & 3;
    if ((i & 0x9f200400) == 0x0e200400) { /* three same */
        uint32_t op = (i >> 11) & 0x1f;
        if (op == 0x19) return u ? FMLA_F16 /* FMLAL2 */ : FMLA_F32;
        if (op == 0x1d && !u) return FMLA_F16; /* FMLAL, FMLSL */
        if (op == 0x13 && !u) return MUL_INT;  /* MUL */
        if (op == 0x12 || op == 0x16) return MUL_INT; /* MLA, MLS, SQDMULH, SQRDMULH */
        return SIMD_OTHER;
    }
    if ((i & 0x9f60c400) == 0x0e400400) /* three same, fp16: FMLA, FMLS */
        return (((i >> 11) & 7) == 1 && !u) ? FMLA_F16 : SIMD_OTHER;
    if ((i & 0x9f200c00) == 0x0e200000) { /* three different: widening multiplies */
        uint32_t op = (i >> 12) & 0xf;
        return (op >= 8 && op <= 0xd) ? MUL_INT : SIMD_OTHER; /* SMLAL .. SQDMULL */
    }
    if ((i & 0x9f208400) == 0x0e008400) { /* three same extra */
        uint32_t op = (i >> 11) & 0xf;
        if (op == 2 || (op == 3 && !u)) return DOT_I8; /* SDOT, UDOT, USDOT */
        if (op == 4 || (op == 5 && !u)) return MMLA_I8; /* SMMLA, UMMLA, USMMLA */
        if (op <= 1) return MUL_INT; /* SQRDMLAH, SQRDMLSH */
        return SIMD_OTHER;
    }
    if ((i & 0x9f000400) == 0x0f000000) { /* by element */
        uint32_t op = (i >> 12) & 0xf;
        if (!u) {
            if (op == 1 || op == 5) return size == 0 ? FMLA_F16 : FMLA_F32;
            if (op == 0 || op == 4) return FMLA_F16; /* FMLAL, FMLSL */
            if (op == 0xe) return DOT_I8;
            if (op == 0xf) return size == 1 ? SIMD_OTHER /* BFDOT */ : DOT_I8;
            if (op == 9) return SIMD_OTHER; /* FMUL */
            return MUL_INT;
        }
        if (op == 8 || op == 0xc) return FMLA_F16; /* FMLAL2, FMLSL2 */
        if (op == 0xe) return DOT_I8;
        if (op == 0 || op == 2 || op == 4 || op == 6 || op == 0xa || op == 0xd || op == 0xf) return MUL_INT;
        return SIMD_OTHER;
    }
    return SIMD_OTHER;
}

static int classify(uint32_t i)
{
    uint32_t op0 = (i >> 25) & 0xf;
    if ((op0 & 0x5) == 0x4) return ((i >> 26) & 1) ? LDST_SIMD : LDST_SCALAR; /* loads and stores */
    if ((op0 & 0x7) == 0x7) return fp_or_int_mul(i);                         /* SIMD and FP */
    if ((op0 & 0xe) == 0xa) {                                                 /* branches, system */
        if ((i & 0xffc00000) == 0xd5000000 || (i & 0xff000000) == 0xd4000000) return INT_OTHER;
        return BRANCH;
    }
    return INT_OTHER; /* data processing, immediate and register */
}

static int is_wait_hint(uint32_t i)
{
    return i == 0xd503203f || i == 0xd503205f || i == 0xd503207f || (i & 0xfffff0ff) == 0xd50330df;
}

static void block_executed(unsigned int vcpu, void *userdata)
{
    if (!recording || vcpu >= MAX_VCPUS) return;
    const uint32_t *block = userdata;
    for (int c = 0; c < NCLASSES; c++) counts[vcpu][c] += block[c];
}

static void block_translated(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    (void)id;
    /* never freed: one small array per translated block, and qemu retranslates rarely */
    uint32_t *block = calloc(NCLASSES, sizeof(uint32_t));
    if (!block) return;
    size_t n = qemu_plugin_tb_n_insns(tb);
    int wait = 0;
    for (size_t k = 0; k < n; k++) {
        struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, k);
        uint32_t word;
        if (qemu_plugin_insn_size(insn) != 4) continue;
        memcpy(&word, qemu_plugin_insn_data(insn), 4);
        block[classify(word)]++;
        wait |= is_wait_hint(word);
    }
    if (wait) {
        memset(block, 0, NCLASSES * sizeof(uint32_t));
        block[WAIT] = (uint32_t)n;
    }
    qemu_plugin_register_vcpu_tb_exec_cb(tb, block_executed, QEMU_PLUGIN_CB_NO_REGS, block);
}

static void syscall_entered(qemu_plugin_id_t id, unsigned int vcpu, int64_t num, uint64_t a1, uint64_t a2,
                            uint64_t a3, uint64_t a4, uint64_t a5, uint64_t a6, uint64_t a7, uint64_t a8)
{
    (void)id; (void)a2; (void)a3; (void)a4; (void)a5; (void)a6; (void)a7; (void)a8;
    if (num != MARKER_SYSCALL || (a1 & MARKER_MASK) != MARKER_MAGIC) {
        if (recording && vcpu < MAX_VCPUS) counts[vcpu][SYSCALL]++;
        return;
    }
    unsigned region = (unsigned)(a1 & 0xffff) >> 1;
    if (!(a1 & 1)) { /* start */
        memset(counts, 0, sizeof(counts));
        recording = 1;
        return;
    }
    recording = 0;
    for (unsigned v = 0; v < MAX_VCPUS; v++) {
        uint64_t any = 0;
        for (int c = 0; c < NCLASSES; c++) any |= counts[v][c];
        if (!any) continue;
        fprintf(out, "region %u vcpu %u", region, v);
        for (int c = 0; c < NCLASSES; c++) fprintf(out, " %llu", (unsigned long long)counts[v][c]);
        fputc('\n', out);
    }
    fflush(out);
}

__attribute__((visibility("default"))) int qemu_plugin_install(qemu_plugin_id_t id, const void *info, int argc,
                                                                char **argv)
{
    (void)info;
    const char *path = NULL;
    for (int k = 0; k < argc; k++)
        if (strncmp(argv[k], "out=", 4) == 0) path = argv[k] + 4;
    if (!path || !(out = fopen(path, "a"))) {
        fprintf(stderr, "insn_profile: pass out=FILE (a writable file)\n");
        return -1;
    }
    qemu_plugin_register_vcpu_tb_trans_cb(id, block_translated);
    qemu_plugin_register_vcpu_syscall_cb(id, syscall_entered);
    return 0;
}
