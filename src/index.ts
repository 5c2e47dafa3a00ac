export { HovleError } from './errors.js';
export type { HovleErrorCode } from './errors.js';
export { systemInfo } from './system-info.js';
export type { SystemInfo, DeviceInfo, BackendName } from './system-info.js';
export { runReferenceGraph, checkDevice, REFERENCE_WEIGHT_TYPES } from './device-check.js';
export type { DeviceCheck, ReferenceGraphResult, ReferenceWeightType } from './device-check.js';
