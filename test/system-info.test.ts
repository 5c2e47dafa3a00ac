import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

import { defaultComputeThreads, systemInfo } from '../src/index.js';
import { loadAddon } from '../src/native/load.js';
import { fakeRoot } from './helpers/fake-root.js';
import { tempDir } from './helpers/tmp.js';

const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
const pin = JSON.parse(readFileSync(new URL('../scripts/llama-pin.json', import.meta.url), 'utf8'));

describe('systemInfo', () => {
  it('reports the pinned ggml, the build and a CPU device with memory', async () => {
    const info = await systemInfo();
    expect(info.hovleVersion).toBe(pkg.version);
    expect(info.ggml.commit).toBe(pin.commit);
    expect(info.ggml.buildCommit.startsWith(pin.commit.slice(0, 7))).toBe(true);
    expect(info.ggml.version).toMatch(/^\d+\.\d+\.\d+$/);
    expect(info.build.backends).toContain('cpu');
    expect(info.registeredBackends).toContain('CPU');
    const cpu = info.devices.find((d) => d.backend === 'CPU');
    expect(cpu).toBeDefined();
    expect(cpu!.type).toBe('cpu');
    expect(cpu!.memoryTotalBytes).toBeGreaterThan(0);
    expect(cpu!.memoryFreeBytes).toBeGreaterThan(0);
    expect(cpu!.memoryFreeBytes).toBeLessThanOrEqual(cpu!.memoryTotalBytes);
    // The portable x86-64 build compiles AVX2 kernels; ggml reports what it uses.
    if (info.build.cpu === 'portable' && process.arch === 'x64') {
      expect(info.cpuFeatures.AVX2).toBe('1');
    }
  });
});

// native/cpu_threads.cpp against machines laid out as files: /proc/self/status (the CPUs the
// process may use), sysfs topology (which logical CPUs share a core), Intel's hybrid P-core
// list, and cgroup CPU quotas (v2 cpu.max, v1 cfs_quota_us).
describe('defaultComputeThreads', () => {
  const base = tempDir('cpu-threads');
  /** A root with `cpus` logical CPUs, cpu i on core `core(i)`, and extra files. */
  function machine(cpus: number, core: (i: number) => number, files: Record<string, string> = {}): string {
    const layout: Record<string, string> = {
      'sys/devices/system/cpu/online': `0-${cpus - 1}\n`,
      'proc/self/status': `Name:\tnode\nCpus_allowed:\tff\nCpus_allowed_list:\t0-${cpus - 1}\n`,
    };
    for (let i = 0; i < cpus; i++) {
      layout[`sys/devices/system/cpu/cpu${i}/topology/physical_package_id`] = '0\n';
      layout[`sys/devices/system/cpu/cpu${i}/topology/core_id`] = `${core(i)}\n`;
    }
    return fakeRoot(base, { ...layout, ...files });
  }
  const threads = (root: string) => loadAddon().addon.defaultComputeThreads(root);
  const smt = (i: number) => i % 4; // 4 cores, 2 threads each: cpu i and i + 4 share core i % 4

  it('one thread per physical core, not per SMT sibling', () => {
    expect(threads(machine(8, smt))).toBe(4);
    expect(threads(machine(4, (i) => i))).toBe(4);
  });

  it('only the cores the process may run on (affinity)', () => {
    expect(threads(machine(8, smt, { 'proc/self/status': 'Cpus_allowed_list:\t0-1,4-5\n' }))).toBe(2);
    expect(threads(machine(8, smt, { 'proc/self/status': 'Cpus_allowed_list:\t3\n' }))).toBe(1);
    // A mask naming CPUs that are not online (as on kernels with many possible CPUs).
    expect(threads(machine(8, smt, { 'proc/self/status': 'Cpus_allowed_list:\t0-4095\n' }))).toBe(4);
  });

  it('performance cores only on a hybrid CPU', () => {
    // cpus 0-3: two P-cores with SMT; 4-11: eight E-cores.
    const hybrid = (i: number) => (i < 4 ? i >> 1 : i + 4);
    expect(threads(machine(12, hybrid, { 'sys/devices/cpu_core/cpus': '0-3\n', 'sys/devices/cpu_atom/cpus': '4-11\n' }))).toBe(2);
    // Pinned to E-cores only: those are what it has.
    expect(threads(machine(12, hybrid, { 'sys/devices/cpu_core/cpus': '0-3\n', 'proc/self/status': 'Cpus_allowed_list:\t8-11\n' }))).toBe(4);
  });

  it('at most the cgroup CPU quota, rounded up (v2 up the hierarchy, and v1)', () => {
    const v2 = (max: string, parent = 'max 100000') => ({
      'proc/self/cgroup': '0::/app/web\n',
      'sys/fs/cgroup/cgroup.procs': '', 'sys/fs/cgroup/app/cgroup.procs': '', 'sys/fs/cgroup/app/web/cgroup.procs': '',
      'sys/fs/cgroup/app/web/cpu.max': `${max}\n`, 'sys/fs/cgroup/app/cpu.max': `${parent}\n`,
    });
    expect(threads(machine(16, (i) => i, v2('150000 100000')))).toBe(2);
    expect(threads(machine(16, (i) => i, v2('max 100000')))).toBe(16);
    expect(threads(machine(16, (i) => i, v2('max 100000', '300000 100000')))).toBe(3);
    expect(threads(machine(2, (i) => i, v2('800000 100000')))).toBe(2);
    const v1 = {
      'proc/self/cgroup': '4:memory:/x\n3:cpu,cpuacct:/docker/abc\n',
      'sys/fs/cgroup/cpu,cpuacct/cgroup.procs': '', 'sys/fs/cgroup/cpu,cpuacct/docker/abc/cgroup.procs': '',
      'sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_quota_us': '250000\n', 'sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_period_us': '100000\n',
    };
    expect(threads(machine(16, (i) => i, v1))).toBe(3);
    expect(threads(machine(16, (i) => i, { ...v1, 'sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_quota_us': '-1\n' }))).toBe(16);
  });

  it('never above what a context accepts (ggml\'s thread limit)', () => {
    const max = loadAddon().addon.maxComputeThreads;
    expect(max).toBe(512);
    expect(threads(machine(max + 88, (i) => i))).toBe(max);
  });

  it('unreadable or odd files fall back to every logical CPU; this machine gets a sane count', () => {
    const logical = loadAddon().addon.defaultComputeThreads(join(base, 'missing'));
    expect(logical).toBeGreaterThanOrEqual(1);
    expect(threads(machine(4, (i) => i % 2, { 'proc/self/status': 'Cpus_allowed_list:\tgarbage\n' }))).toBe(2); // from "online": 2 cores
    const here = defaultComputeThreads();
    expect(here).toBeGreaterThanOrEqual(1);
    expect(here).toBeLessThanOrEqual(availableParallelism());
  });
});
