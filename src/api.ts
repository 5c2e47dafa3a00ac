// The short names most programs want: loadModel(), then model.createSession() via createSession().
import { HovleModel, type LoadModelOptions } from './runtime/model.js';
import { Session, type SessionOptions } from './session/session.js';

/** Loads a HoVLE GGUF (see LoadModelOptions: backend, gpuLayers, mmap, signal, onProgress). */
export function loadModel(path: string, options: LoadModelOptions = {}): Promise<HovleModel> {
  return HovleModel.load(path, options);
}

/** A conversation with its own KV cache (see SessionOptions: contextSize, system, threads...). */
export function createSession(model: HovleModel, options: SessionOptions = {}): Promise<Session> {
  return Session.create(model, options);
}
