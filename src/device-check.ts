import { HovleError } from './errors.js';
import { loadAddon } from './native/load.js';
import type { ReferenceGraphResult, ReferenceWeightType } from './native/addon.js';

export type { ReferenceGraphResult, ReferenceWeightType };

export const REFERENCE_WEIGHT_TYPES: readonly ReferenceWeightType[] = ['f32', 'f16', 'q8_0', 'q4_0'];

/**
 * Runs hovle's fixed reference graph (mul_mat with weights of `weightType`, rms_norm, mul,
 * NeoX rope, soft_max, add) on one ggml device and returns its output. Inputs are generated
 * from `seed` the same way on every platform.
 */
export async function runReferenceGraph(
  device: string,
  weightType: ReferenceWeightType = 'f32',
  seed = 1,
): Promise<ReferenceGraphResult> {
  if (typeof device !== 'string' || device.length === 0) {
    throw new HovleError('INVALID_ARGUMENT', 'device must be a non-empty ggml device name such as "CPU"');
  }
  if (!REFERENCE_WEIGHT_TYPES.includes(weightType)) {
    throw new HovleError('INVALID_ARGUMENT', `weightType must be one of ${REFERENCE_WEIGHT_TYPES.join(', ')}`);
  }
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) {
    throw new HovleError('INVALID_ARGUMENT', 'seed must be an integer in [0, 2^32)');
  }
  return loadAddon().addon.runReferenceGraph(device, weightType, seed);
}

export interface DeviceCheck {
  device: string;
  weightType: ReferenceWeightType;
  /** max |device - CPU| over the output. */
  maxAbsDiff: number;
  /** Largest |CPU output|, for scale. */
  maxAbs: number;
}

/** Runs the reference graph on `device` and on the CPU and reports how far apart they are. */
export async function checkDevice(
  device: string,
  weightTypes: readonly ReferenceWeightType[] = REFERENCE_WEIGHT_TYPES,
  seed = 1,
): Promise<DeviceCheck[]> {
  const out: DeviceCheck[] = [];
  for (const weightType of weightTypes) {
    const [dev, cpu] = await Promise.all([
      runReferenceGraph(device, weightType, seed),
      runReferenceGraph('CPU', weightType, seed),
    ]);
    let maxAbsDiff = 0;
    let maxAbs = 0;
    for (let i = 0; i < cpu.output.length; i++) {
      const d = Math.abs(dev.output[i]! - cpu.output[i]!);
      // NaN must fail the check, so compare with !(d <= x) rather than d > x.
      if (!(d <= maxAbsDiff)) maxAbsDiff = Number.isNaN(d) ? Number.POSITIVE_INFINITY : d;
      maxAbs = Math.max(maxAbs, Math.abs(cpu.output[i]!));
    }
    out.push({ device, weightType, maxAbsDiff, maxAbs });
  }
  return out;
}
