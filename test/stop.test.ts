// Stop strings split across decoded pieces: nothing of the stop string may reach the caller.
import { describe, expect, it } from 'vitest';

import { StopMatcher } from '../src/session/stop.js';

function run(stops: string[], pieces: string[]) {
  const m = new StopMatcher(stops);
  let out = '';
  for (const p of pieces) {
    const r = m.push(p);
    out += r.emit;
    if (r.stopped) return { out, stopped: true };
  }
  const r = m.finish('');
  return { out: out + r.emit, stopped: r.stopped };
}

describe('StopMatcher', () => {
  it('cuts before a stop string spread over several pieces', () => {
    expect(run(['<end>'], ['Hello <', 'e', 'nd> more'])).toEqual({ out: 'Hello ', stopped: true });
    expect(run(['\n\nUser:'], ['a\n', '\nUs', 'er: hi'])).toEqual({ out: 'a', stopped: true });
  });

  it('releases held text that turned out not to be a stop string', () => {
    const m = new StopMatcher(['<end>']);
    expect(m.push('x <e')).toEqual({ emit: 'x ', stopped: false });
    expect(m.push('ffort')).toEqual({ emit: '<effort', stopped: false });
    expect(run(['<end>'], ['a <', 'en'])).toEqual({ out: 'a <en', stopped: false });
  });

  it('takes the earliest of several stops, and a stop completed by the final flush', () => {
    expect(run(['cd', 'b'], ['abcd'])).toEqual({ out: 'a', stopped: true });
    const m = new StopMatcher(['END']);
    expect(m.push('the EN').emit).toBe('the ');
    expect(m.finish('D')).toEqual({ emit: '', stopped: true });
  });

  it('without stops passes everything through; refuses empty stop strings', () => {
    expect(run([], ['a', 'b'])).toEqual({ out: 'ab', stopped: false });
    expect(() => new StopMatcher([''])).toThrow(/non-empty/);
  });
});
