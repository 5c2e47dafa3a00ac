// SentencePiece BPE with byte fallback, run the way InternLM2's slow HF tokenizer runs it:
// the text is first split on the added tokens (leftmost match, longest first), every other
// chunk is encoded by SentencePiece on its own (escaping spaces as U+2581, the dummy prefix as
// the model says), then BOS is prepended. The merge loop follows sentencepiece's bpe_model.cc:
// repeatedly merge the adjacent pair whose concatenation is a piece with the highest score,
// leftmost first on ties; leftover symbols fall back to <0xXX> byte pieces. USER_DEFINED pieces
// are taken whole where they start a symbol (longest first) and never merged, as sentencepiece's
// prefix matcher freezes them.
#include "tokenizer.h"

#include <algorithm>
#include <memory>
#include <queue>
#include <string>
#include <unordered_map>
#include <vector>

#include "errors.h"
#include "promise_worker.h"

namespace hovle {
namespace {

constexpr int kUserDefined = 4;
constexpr int kUnused = 5;
constexpr int kByte = 6;

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// The byte of a "<0xXX>" piece, or -1. Strict on purpose: std::stoi accepted "<0x-1>" from a
// hostile vocabulary (a write before byte_ids) and threw, uncaught, on "<0xZZ>".
int ByteValue(const std::string& piece) {
  if (piece.size() != 6 || piece.compare(0, 3, "<0x") != 0 || piece[5] != '>') return -1;
  const int hi = HexDigit(piece[3]), lo = HexDigit(piece[4]);
  return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

size_t Utf8Len(unsigned char c) {
  if (c < 0x80) return 1;
  if ((c >> 5) == 0x6) return 2;
  if ((c >> 4) == 0xE) return 3;
  if ((c >> 3) == 0x1E) return 4;
  return 1;  // invalid lead byte: one byte, which byte fallback then encodes
}

class Tokenizer {
 public:
  std::vector<std::string> tokens;
  std::vector<float> scores;
  std::vector<int> types;
  std::unordered_map<std::string, int> piece_to_id;
  std::vector<int> added;  // added-token ids, longest content first
  std::vector<int> user_defined[256];  // USER_DEFINED piece ids by first byte, longest first
  int byte_ids[256];
  bool add_space_prefix = false;
  bool byte_fallback = true;
  bool remove_extra_whitespaces = false;
  int unk_id = 0;

  void EncodeChunk(const std::string& raw, std::vector<int32_t>& out) const {
    std::string text;
    if (remove_extra_whitespaces) {
      // Collapse runs of spaces and trim, as sentencepiece's normalizer does.
      bool prev_space = true;
      for (char c : raw) {
        if (c == ' ') {
          if (!prev_space) text += c;
          prev_space = true;
        } else {
          text += c;
          prev_space = false;
        }
      }
      while (!text.empty() && text.back() == ' ') text.pop_back();
    } else {
      text = raw;
    }
    if (text.empty()) return;
    std::string norm = add_space_prefix ? "\xE2\x96\x81" : "";
    for (char c : text) {
      if (c == ' ') norm += "\xE2\x96\x81";
      else norm += c;
    }
    struct Symbol {
      int prev, next;
      size_t start, len;
      bool frozen;  // a USER_DEFINED piece
    };
    std::vector<Symbol> sym;
    for (size_t i = 0; i < norm.size();) {
      size_t n = 0;
      for (int id : user_defined[static_cast<unsigned char>(norm[i])]) {
        if (norm.compare(i, tokens[id].size(), tokens[id]) == 0) {
          n = tokens[id].size();
          break;
        }
      }
      const bool frozen = n > 0;
      if (!frozen) n = std::min(Utf8Len(static_cast<unsigned char>(norm[i])), norm.size() - i);
      sym.push_back({static_cast<int>(sym.size()) - 1, static_cast<int>(sym.size()) + 1, i, n, frozen});
      i += n;
    }
    sym.back().next = -1;
    struct Pair {
      int left, right;
      float score;
      size_t len;
    };
    auto cmp = [](const Pair& a, const Pair& b) { return a.score != b.score ? a.score < b.score : a.left > b.left; };
    std::priority_queue<Pair, std::vector<Pair>, decltype(cmp)> agenda(cmp);
    auto try_pair = [&](int l, int r) {
      if (l < 0 || r < 0 || sym[l].frozen || sym[r].frozen) return;
      auto it = piece_to_id.find(norm.substr(sym[l].start, sym[l].len + sym[r].len));
      if (it == piece_to_id.end() || types[it->second] == kUnused) return;
      agenda.push({l, r, scores[it->second], sym[l].len + sym[r].len});
    };
    for (size_t i = 1; i < sym.size(); ++i) try_pair(static_cast<int>(i) - 1, static_cast<int>(i));
    while (!agenda.empty()) {
      const Pair top = agenda.top();
      agenda.pop();
      Symbol& l = sym[top.left];
      Symbol& r = sym[top.right];
      if (l.len == 0 || r.len == 0 || l.len + r.len != top.len || l.next != top.right) continue;
      l.len += r.len;
      l.next = r.next;
      if (r.next >= 0) sym[r.next].prev = top.left;
      r.len = 0;
      try_pair(l.prev, top.left);
      try_pair(top.left, l.next);
    }
    for (int i = 0; i != -1; i = sym[i].next) {
      const std::string piece = norm.substr(sym[i].start, sym[i].len);
      auto it = piece_to_id.find(piece);
      if (it != piece_to_id.end() && types[it->second] != kUnused) {
        out.push_back(it->second);
      } else if (byte_fallback) {
        for (unsigned char c : piece) out.push_back(byte_ids[c] >= 0 ? byte_ids[c] : unk_id);
      } else {
        out.push_back(unk_id);
      }
    }
  }

  std::vector<int32_t> Encode(const std::string& text, bool add_bos, int bos_id) const {
    std::vector<int32_t> out;
    if (add_bos) out.push_back(bos_id);
    size_t chunk_start = 0;
    size_t i = 0;
    while (i < text.size()) {
      int match = -1;
      for (int id : added) {  // longest first, so the first hit is the longest at i
        const std::string& t = tokens[id];
        if (!t.empty() && text.compare(i, t.size(), t) == 0) {
          match = id;
          break;
        }
      }
      if (match < 0) {
        ++i;
        continue;
      }
      EncodeChunk(text.substr(chunk_start, i - chunk_start), out);
      out.push_back(match);
      i += tokens[match].size();
      chunk_start = i;
    }
    EncodeChunk(text.substr(chunk_start), out);
    return out;
  }
};

struct TokenizerData {
  Tokenizer tok;
  int bos_id = 1;
};

// encodeAsync: the same encode on a libuv worker, so a long prompt does not hold the event loop
// (about a second per few MB of text).
class EncodeWorker : public PromiseWorker {
 public:
  EncodeWorker(Napi::Env env, std::shared_ptr<const TokenizerData> data, std::string text, bool add_bos)
      : PromiseWorker(env, "hovle.encode"), data_(std::move(data)), text_(std::move(text)), add_bos_(add_bos) {}

 protected:
  void Run() override {
    ids_ = data_->tok.Encode(text_, add_bos_, data_->bos_id);
    std::string().swap(text_);
  }
  Napi::Value Result(Napi::Env env) override {
    Napi::Int32Array out = Napi::Int32Array::New(env, ids_.size());
    std::copy(ids_.begin(), ids_.end(), out.Data());
    return out;
  }

 private:
  std::shared_ptr<const TokenizerData> data_;
  std::string text_;
  bool add_bos_;
  std::vector<int32_t> ids_;
};

}  // namespace

Napi::Value CreateTokenizer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) throw MakeError(env, "INVALID_ARGUMENT", "createTokenizer(spec)");
  Napi::Object spec = info[0].As<Napi::Object>();
  // Owned here until the functions below share it: a throw on the way must not leak it.
  auto owned = std::make_unique<TokenizerData>();
  TokenizerData* data = owned.get();
  Tokenizer& t = data->tok;
  Napi::Array tokens = spec.Get("tokens").As<Napi::Array>();
  Napi::Float32Array scores = spec.Get("scores").As<Napi::Float32Array>();
  Napi::Int32Array types = spec.Get("types").As<Napi::Int32Array>();
  const uint32_t n = tokens.Length();
  if (scores.ElementLength() != n || types.ElementLength() != n) {
    throw MakeError(env, "GGUF_INVALID", "tokenizer arrays differ in length");
  }
  t.tokens.resize(n);
  t.scores.assign(scores.Data(), scores.Data() + n);
  t.types.assign(types.Data(), types.Data() + n);
  std::fill(std::begin(t.byte_ids), std::end(t.byte_ids), -1);
  for (uint32_t i = 0; i < n; ++i) {
    t.tokens[i] = tokens.Get(i).ToString().Utf8Value();
    const int byte = t.types[i] == kByte ? ByteValue(t.tokens[i]) : -1;
    if (byte >= 0) {
      t.byte_ids[byte] = static_cast<int>(i);
    } else if (t.types[i] != kUnused) {
      t.piece_to_id.emplace(t.tokens[i], static_cast<int>(i));  // first id wins on duplicates
    }
    if (t.types[i] == kUserDefined && !t.tokens[i].empty()) t.user_defined[static_cast<unsigned char>(t.tokens[i][0])].push_back(static_cast<int>(i));
  }
  for (auto& ids : t.user_defined) {
    std::stable_sort(ids.begin(), ids.end(), [&](int a, int b) { return t.tokens[a].size() > t.tokens[b].size(); });
  }
  Napi::Int32Array added = spec.Get("added").As<Napi::Int32Array>();
  for (size_t i = 0; i < added.ElementLength(); ++i) {
    if (added[i] >= 0 && static_cast<uint32_t>(added[i]) < n) t.added.push_back(added[i]);
  }
  std::stable_sort(t.added.begin(), t.added.end(), [&](int a, int b) { return t.tokens[a].size() > t.tokens[b].size(); });
  t.add_space_prefix = spec.Get("addSpacePrefix").ToBoolean();
  t.byte_fallback = spec.Get("byteFallback").ToBoolean();
  t.remove_extra_whitespaces = spec.Get("removeExtraWhitespaces").ToBoolean();
  t.unk_id = spec.Get("unkId").As<Napi::Number>().Int32Value();
  data->bos_id = spec.Get("bosId").As<Napi::Number>().Int32Value();

  Napi::Object handle = Napi::Object::New(env);
  // Each function holds the vocabulary; it goes with the last of them (or an encode in flight).
  std::shared_ptr<const TokenizerData> shared = std::move(owned);
  handle.Set("encode", Napi::Function::New(env, [shared](const Napi::CallbackInfo& ci) -> Napi::Value {
    const bool add_bos = ci.Length() > 1 && ci[1].ToBoolean();
    // A prompt of any length the caller has in memory: its UTF-8 copy and ids can fail to allocate.
    std::vector<int32_t> ids = RethrowAsJs(ci.Env(), [&] { return shared->tok.Encode(ci[0].ToString().Utf8Value(), add_bos, shared->bos_id); });
    Napi::Int32Array out = Napi::Int32Array::New(ci.Env(), ids.size());
    std::copy(ids.begin(), ids.end(), out.Data());
    return out;
  }, "encode"));
  handle.Set("encodeAsync", Napi::Function::New(env, [shared](const Napi::CallbackInfo& ci) -> Napi::Value {
    const bool add_bos = ci.Length() > 1 && ci[1].ToBoolean();
    return RethrowAsJs(ci.Env(), [&] {
      auto* w = new EncodeWorker(ci.Env(), shared, ci[0].ToString().Utf8Value(), add_bos);
      Napi::Promise p = w->Promise();
      w->Queue();
      return p;
    });
  }, "encodeAsync"));
  return handle;
}

}  // namespace hovle
