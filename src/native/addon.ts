// TypeScript view of what hovle.node exports (native/addon.cpp). Only src/ talks to it.

/** build-info.json, also compiled into the addon (CMakeLists.txt writes both). */
export interface BuildInfo {
  version: string;
  nativeApi: number;
  llamaCommit: string;
  patches: string[];
  backends: Array<'cpu' | 'vulkan' | 'cuda' | 'metal'>;
  cpu: 'portable' | 'x86-64-v2' | 'native';
  /** /proc/cpuinfo flag names the compiled code needs. */
  cpuRequires: string[];
  buildType: string;
  platform: string;
  cudaArchitectures?: string;
}

export interface RawDevice {
  name: string;
  description: string;
  type: 'cpu' | 'gpu' | 'igpu' | 'accel' | 'other';
  backend: string;
  memoryFree: number;
  memoryTotal: number;
}

export interface RawSystemInfo {
  ggmlVersion: string;
  ggmlCommit: string;
  registeredBackends: string[];
  devices: RawDevice[];
  cpuFeatures: Record<string, string>;
}

export type ReferenceWeightType = 'f32' | 'f16' | 'q8_0' | 'q4_0';

export interface ReferenceGraphResult {
  output: Float32Array;
  /** [tokens, features], row-major. */
  shape: [number, number];
}

export interface NativeAddon {
  /** JSON text of BuildInfo. */
  buildInfo: string;
  registerErrorClass(cls: new (code: never, message: string) => Error): void;
  systemInfo(): Promise<RawSystemInfo>;
  runReferenceGraph(device: string, weightType: ReferenceWeightType, seed: number): Promise<ReferenceGraphResult>;
}
