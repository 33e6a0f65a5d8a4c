/**
 * Run a program under a real seccomp allow-list, the way systemd applies
 * `SystemCallFilter=` with `SystemCallErrorNumber=EPERM`: every system call
 * not in the list fails with EPERM. Lets the e2e test prove that Node and the
 * daemon work inside the unit's filter without a running systemd.
 *
 * A 30-line C program built on demand with the system's cc against
 * libseccomp.so.2 (declared here: the -dev headers are often missing). Returns
 * undefined where there is no compiler or no libseccomp — callers skip.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import { spawnSync } from 'node:child_process';

const SOURCE = String.raw`
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>
#include <sys/prctl.h>
typedef void *scmp_filter_ctx;
struct scmp_arg_cmp { unsigned int arg; int op; uint64_t datum_a; uint64_t datum_b; };
#define SCMP_CMP_EQ 4
#define SCMP_CMP_MASKED_EQ 7
extern scmp_filter_ctx seccomp_init(uint32_t def_action);
extern int seccomp_rule_add(scmp_filter_ctx ctx, uint32_t action, int syscall, unsigned int arg_cnt, ...);
extern int seccomp_syscall_resolve_name(const char *name);
extern int seccomp_load(scmp_filter_ctx ctx);
#define SCMP_ACT_ALLOW 0x7fff0000U
#define SCMP_ACT_ERRNO(x) (0x00050000U | ((x) & 0x0000ffffU))
/* usage: seccomp-run ALLOWLIST_FILE PROGRAM ARGS...
 * One syscall name a line. Lines "af:N" restrict socket(2) to those address
 * families (RestrictAddressFamilies=); other families get EPERM. A line "mdwe"
 * adds MemoryDenyWriteExecute=yes as systemd installs it: a separate filter
 * refusing mmap(PROT_WRITE|PROT_EXEC) and mprotect/pkey_mprotect(PROT_EXEC). */
int main(int argc, char **argv) {
  if (argc < 3) { fprintf(stderr, "usage: %s allowlist program [args]\n", argv[0]); return 97; }
  FILE *f = fopen(argv[1], "r");
  if (!f) { perror(argv[1]); return 96; }
  scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ERRNO(1)); /* EPERM */
  if (!ctx) { fprintf(stderr, "seccomp_init failed\n"); return 95; }
  char line[128];
  int families[64], nfam = 0, allow_socket = 0, mdwe = 0;
  int nr_socket = seccomp_syscall_resolve_name("socket");
  while (fgets(line, sizeof line, f)) {
    line[strcspn(line, "\n")] = 0;
    if (strncmp(line, "af:", 3) == 0) { if (nfam < 64) families[nfam++] = atoi(line + 3); continue; }
    if (strcmp(line, "mdwe") == 0) { mdwe = 1; continue; }
    int nr = seccomp_syscall_resolve_name(line);
    if (nr == nr_socket) { allow_socket = 1; continue; }
    if (nr >= 0 && seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0) != 0) { fprintf(stderr, "rule %s failed\n", line); return 94; }
  }
  if (allow_socket && nfam == 0 && seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr_socket, 0) != 0) return 94;
  for (int i = 0; allow_socket && i < nfam; i++) {
    struct scmp_arg_cmp c = { 0, SCMP_CMP_EQ, (uint64_t)families[i], 0 };
    if (seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr_socket, 1, c) != 0) { fprintf(stderr, "socket rule failed\n"); return 94; }
  }
  fclose(f);
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)) { perror("no_new_privs"); return 93; }
  if (mdwe) { /* loaded first: the allow-list filter does not allow seccomp() itself */
    scmp_filter_ctx m = seccomp_init(SCMP_ACT_ALLOW);
    struct scmp_arg_cmp wx = { 2, SCMP_CMP_MASKED_EQ, 0x6 /* PROT_WRITE|PROT_EXEC */, 0x6 };
    struct scmp_arg_cmp x = { 2, SCMP_CMP_MASKED_EQ, 0x4 /* PROT_EXEC */, 0x4 };
    if (!m || seccomp_rule_add(m, SCMP_ACT_ERRNO(1), seccomp_syscall_resolve_name("mmap"), 1, wx) ||
        seccomp_rule_add(m, SCMP_ACT_ERRNO(1), seccomp_syscall_resolve_name("mprotect"), 1, x) ||
        seccomp_rule_add(m, SCMP_ACT_ERRNO(1), seccomp_syscall_resolve_name("pkey_mprotect"), 1, x) ||
        seccomp_load(m)) { fprintf(stderr, "mdwe filter failed\n"); return 92; }
  }
  if (seccomp_load(ctx)) { perror("seccomp_load"); return 99; }
  execv(argv[2], argv + 2);
  perror("execv");
  return 98;
}
`;

let built: string | null | undefined;

/** Path of the compiled runner, or null where it cannot be built here. */
export function seccompRunner(): string | null {
  if (built !== undefined) return built;
  built = null;
  if (process.platform !== 'linux') return built;
  const hash = crypto.createHash('sha256').update(SOURCE).digest('hex').slice(0, 12);
  const dir = path.join(os.tmpdir(), `mediacache-seccomp-${hash}`);
  const bin = path.join(dir, 'seccomp-run');
  if (fs.existsSync(bin)) return (built = bin);
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const src = path.join(dir, `seccomp-run-${process.pid}.c`);
  fs.writeFileSync(src, SOURCE);
  const tmpBin = `${bin}.${process.pid}`;
  const r = spawnSync('cc', ['-O1', '-o', tmpBin, src, '-l:libseccomp.so.2'], { encoding: 'utf8' });
  fs.rmSync(src, { force: true });
  if (r.status !== 0) return built;
  fs.renameSync(tmpBin, bin); // atomic: parallel test files never run a half-written binary
  return (built = bin);
}
