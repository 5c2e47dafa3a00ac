import { parseArgs } from 'node:util';

import { checkDevice, type DeviceCheck } from '../device-check.js';
import { systemInfo } from '../system-info.js';
import { EXIT, type Command } from './command.js';
import { formatBytes, table } from './format.js';

// Tolerances for `--check`: the reference graph's outputs are O(1); quantized weights are the
// same bytes on every device, so the only differences are accumulation order and f16 rounding
// inside the backend's kernels.
const CHECK_TOLERANCE = 2e-2;

const usage = `Usage: hovle info [--json] [--check]

Prints what this installation can run on: hovle and ggml versions, compiled backends,
devices (name, type, free/total memory) and the CPU features ggml uses.

Options:
  --json    machine-readable output
  --check   also run hovle's reference graph on every non-CPU device and compare it with
            the CPU (exit code 3 if a device disagrees)
  -h, --help

Vulkan: software devices such as lavapipe are hidden by ggml unless
GGML_VK_VISIBLE_DEVICES lists them (e.g. GGML_VK_VISIBLE_DEVICES=0).`;

async function run(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: { json: { type: 'boolean', default: false }, check: { type: 'boolean', default: false } },
    strict: true,
  });
  const info = await systemInfo();
  let checks: DeviceCheck[] = [];
  if (values.check) {
    for (const d of info.devices) {
      if (d.backend !== 'CPU') checks.push(...(await checkDevice(d.name)));
    }
  }
  const failed = checks.filter((c) => !(c.maxAbsDiff <= CHECK_TOLERANCE));

  if (values.json) {
    const out = values.check ? { ...info, checks: checks.map((c) => ({ ...c, ok: c.maxAbsDiff <= CHECK_TOLERANCE })) } : info;
    process.stdout.write(JSON.stringify(out, null, 2) + '\n');
  } else {
    const lines: string[] = [];
    lines.push(`hovle ${info.hovleVersion}`);
    lines.push(
      `ggml ${info.ggml.version} from llama.cpp ${info.ggml.commit.slice(0, 12)}` +
        (info.ggml.patches.length ? ` (+ ${info.ggml.patches.join(', ')})` : ''),
    );
    lines.push(
      `build: backends ${info.build.backends.join(', ')}; CPU code ${info.build.cpu}; ${info.build.buildType}; ` +
        `${info.build.platform}` +
        (info.build.cudaArchitectures ? `; CUDA arch ${info.build.cudaArchitectures}` : ''),
    );
    lines.push(`addon: ${info.build.addonPath}`);
    lines.push('');
    lines.push(
      table(
        ['device', 'backend', 'type', 'free', 'total', 'description'],
        info.devices.map((d) => [
          d.name,
          d.backend,
          d.type,
          formatBytes(d.memoryFreeBytes),
          formatBytes(d.memoryTotalBytes),
          d.description,
        ]),
      ),
    );
    lines.push('');
    const features = Object.entries(info.cpuFeatures).map(([k, v]) => (v === '1' ? k : `${k}=${v}`));
    lines.push(`CPU features: ${features.join(' ') || '-'}`);
    lines.push(`compute threads by default: ${info.computeThreads} (one per physical core allowed; -t/--threads to change)`);
    if (values.check) {
      lines.push('');
      if (checks.length === 0) {
        lines.push('check: no non-CPU devices to compare');
      } else {
        lines.push(
          table(
            ['device', 'weights', 'max |diff| vs CPU', 'max |CPU|', 'result'],
            checks.map((c) => [
              c.device,
              c.weightType,
              c.maxAbsDiff.toExponential(2),
              c.maxAbs.toFixed(3),
              c.maxAbsDiff <= CHECK_TOLERANCE ? 'ok' : 'MISMATCH',
            ]),
          ),
        );
      }
    }
    process.stdout.write(lines.join('\n') + '\n');
  }
  return failed.length > 0 ? EXIT.checkFailed : EXIT.ok;
}

export const infoCommand: Command = {
  name: 'info',
  summary: 'show versions, compiled backends, devices and CPU features',
  usage,
  run,
};
