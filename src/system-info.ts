import { loadAddon } from './native/load.js';
import type { BuildInfo, RawDevice } from './native/addon.js';

export type BackendName = BuildInfo['backends'][number];

export interface DeviceInfo {
  /** ggml device name, as accepted by `device` options (e.g. "CPU", "Vulkan0", "CUDA0"). */
  name: string;
  description: string;
  type: RawDevice['type'];
  /** ggml backend that owns the device ("CPU", "Vulkan", "CUDA", "Metal"). */
  backend: string;
  memoryFreeBytes: number;
  memoryTotalBytes: number;
}

export interface SystemInfo {
  hovleVersion: string;
  ggml: {
    version: string;
    /** The pinned llama.cpp commit ggml was built from (scripts/llama-pin.json). */
    commit: string;
    /** ggml's own description of its source tree ("-dirty" when build-time patches are applied). */
    buildCommit: string;
    /** Build-time patches applied to that source (scripts/patches/). */
    patches: string[];
  };
  build: {
    /** Backends compiled into this addon. */
    backends: BackendName[];
    cpu: BuildInfo['cpu'];
    cpuRequires: string[];
    buildType: string;
    platform: string;
    cudaArchitectures?: string;
    addonPath: string;
  };
  /** ggml backends that registered at run time (a compiled GPU backend with no driver is absent). */
  registeredBackends: string[];
  devices: DeviceInfo[];
  /** What the CPU backend detected and uses, e.g. { AVX2: "1", OPENMP: "1" }. */
  cpuFeatures: Record<string, string>;
  /** The threads a context computes with unless told otherwise: see defaultComputeThreads(). */
  computeThreads: number;
}

let computeThreads: number | undefined;

/**
 * The default `threads` of a context: one per physical core this process may run on (not per
 * SMT sibling), performance cores only on a hybrid Intel CPU, at most the cgroup's CPU quota
 * (Linux), performance cores only on Apple Silicon (macOS), every logical CPU elsewhere; never
 * above maxComputeThreads(). Read once per process (native/cpu_threads.h).
 */
export function defaultComputeThreads(): number {
  computeThreads ??= loadAddon().addon.defaultComputeThreads();
  return computeThreads;
}

/** The most `threads` a context takes: ggml's limit on the threads of one graph compute. */
export function maxComputeThreads(): number {
  return loadAddon().addon.maxComputeThreads;
}

/**
 * What this installation can run on. Asynchronous because initialising GPU backends can take
 * a noticeable time; it runs on a worker thread.
 */
export async function systemInfo(): Promise<SystemInfo> {
  const { addon, info, path } = loadAddon();
  const raw = await addon.systemInfo();
  return {
    hovleVersion: info.version,
    ggml: { version: raw.ggmlVersion, commit: info.llamaCommit, buildCommit: raw.ggmlCommit, patches: info.patches },
    build: {
      backends: info.backends,
      cpu: info.cpu,
      cpuRequires: info.cpuRequires,
      buildType: info.buildType,
      platform: info.platform,
      ...(info.cudaArchitectures ? { cudaArchitectures: info.cudaArchitectures } : {}),
      addonPath: path,
    },
    registeredBackends: raw.registeredBackends,
    devices: raw.devices.map((d) => ({
      name: d.name,
      description: d.description,
      type: d.type,
      backend: d.backend,
      memoryFreeBytes: d.memoryFree,
      memoryTotalBytes: d.memoryTotal,
    })),
    cpuFeatures: raw.cpuFeatures,
    computeThreads: defaultComputeThreads(),
  };
}
