#include <segnet/error.h>
#include <segnet/state_dict.h>

#include <caffe2/serialize/inline_container.h>
#include <torch/torch.h>

#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <unordered_map>

namespace segnet {

namespace {

// Where a tensor's elements live: a storage of the file, `offset` elements into it.
struct StorageRef {
  std::string key;
  c10::ScalarType dtype = c10::kFloat;
  int64_t numel = 0;
  int64_t offset = 0;  // legacy files' storage views
};

struct TensorRef {
  StorageRef storage;
  int64_t offset = 0;
  std::vector<int64_t> sizes, strides;
};

// What a state dict's pickle can hold. Containers are shared, as Python's objects are, because the
// pickle's memo refers back to them and later opcodes fill them.
struct Value;
using Ref = std::shared_ptr<Value>;
struct Value {
  enum class Kind { Mark, None, Bool, Int, Float, String, Tuple, List, Dict, Global, Storage, Tensor } kind;
  int64_t integer = 0;  // also a Bool
  double real = 0;
  std::string text;     // also a Global's qualified name
  std::vector<Ref> items;  // Tuple, List; Dict: key, value, key, value...
  c10::ScalarType dtype = c10::kFloat;  // a storage class (a Global)
  StorageRef storage;
  TensorRef tensor;
};

Ref make(Value::Kind kind) {
  auto v = std::make_shared<Value>();
  v->kind = kind;
  return v;
}

// The globals a state dict's pickle names: everything else is refused.
const std::map<std::string, c10::ScalarType>& storage_classes() {
  static const std::map<std::string, c10::ScalarType> classes = {
      {"torch.FloatStorage", c10::kFloat},   {"torch.DoubleStorage", c10::kDouble}, {"torch.HalfStorage", c10::kHalf},
      {"torch.BFloat16Storage", c10::kBFloat16}, {"torch.LongStorage", c10::kLong}, {"torch.IntStorage", c10::kInt},
      {"torch.ShortStorage", c10::kShort},   {"torch.CharStorage", c10::kChar},     {"torch.ByteStorage", c10::kByte},
      {"torch.BoolStorage", c10::kBool}};
  return classes;
}
constexpr const char* kOrderedDict = "collections.OrderedDict";
constexpr const char* kRebuildTensor = "torch._utils._rebuild_tensor_v2";
constexpr const char* kRebuildParameter = "torch._utils._rebuild_parameter";

// A pickle (protocols 2 to 4) reader that knows the opcodes torch.save emits for a dict of tensors.
class Unpickler {
 public:
  using PersistentLoad = std::function<StorageRef(const Value& id)>;
  Unpickler(std::istream& in, const std::filesystem::path& file, PersistentLoad persistent_load)
      : in_(in), file_(file), persistent_load_(std::move(persistent_load)) {}

  Ref load() {
    for (;;) {
      const uint8_t op = byte();
      switch (op) {
        case 0x80: if (byte() > 4) fail("is pickled with a protocol newer than torch.save's"); break;  // PROTO
        case 0x95: bytes(8); break;  // FRAME: its length only helps readers that buffer
        case '.': return pop();  // STOP
        case '(': marks_.push_back(stack_.size()); break;
        case ')': stack_.push_back(make(Value::Kind::Tuple)); break;
        case ']': stack_.push_back(make(Value::Kind::List)); break;
        case '}': stack_.push_back(make(Value::Kind::Dict)); break;
        case 't': push_sequence(Value::Kind::Tuple, pop_to_mark()); break;
        case 0x85: case 0x86: case 0x87: {  // TUPLE1..3
          const size_t n = op - 0x84;
          need(n);
          push_sequence(Value::Kind::Tuple, std::vector<Ref>(stack_.end() - n, stack_.end()));
          stack_.erase(stack_.end() - n - 1, stack_.end() - 1);
          break;
        }
        case 'N': stack_.push_back(make(Value::Kind::None)); break;
        case 0x88: case 0x89: push_int(Value::Kind::Bool, op == 0x88); break;  // NEWTRUE, NEWFALSE
        case 'J': push_int(Value::Kind::Int, static_cast<int32_t>(little_endian(4))); break;
        case 'K': push_int(Value::Kind::Int, little_endian(1)); break;
        case 'M': push_int(Value::Kind::Int, little_endian(2)); break;
        case 0x8a: {  // LONG1: n-byte two's complement
          const size_t n = byte();
          if (n > 8) fail("holds an integer too large for a tensor's size");
          uint64_t value = little_endian(n);
          if (n > 0 && n < 8 && (value >> (8 * n - 1)) & 1) value |= ~uint64_t(0) << (8 * n);
          push_int(Value::Kind::Int, static_cast<int64_t>(value));
          break;
        }
        case 'G': {  // BINFLOAT, big-endian
          uint64_t bits = 0;
          for (char c : bytes(8)) bits = bits << 8 | static_cast<uint8_t>(c);
          auto v = make(Value::Kind::Float);
          std::memcpy(&v->real, &bits, 8);
          stack_.push_back(v);
          break;
        }
        case 'X': push_string(bytes(little_endian(4))); break;  // BINUNICODE
        case 0x8c: push_string(bytes(byte())); break;          // SHORT_BINUNICODE
        case 'q': memo_[byte()] = top(); break;                // BINPUT
        case 'r': memo_[little_endian(4)] = top(); break;      // LONG_BINPUT
        case 0x94: memo_[memo_.size()] = top(); break;         // MEMOIZE
        case 'h': stack_.push_back(memo(byte())); break;       // BINGET
        case 'j': stack_.push_back(memo(little_endian(4))); break;
        case 'c': {  // GLOBAL
          const std::string module = line();
          push_global(module + "." + line());
          break;
        }
        case 0x93: {  // STACK_GLOBAL
          const Ref name = pop(), module = pop();
          if (name->kind != Value::Kind::String || module->kind != Value::Kind::String) fail("names a global oddly");
          push_global(module->text + "." + name->text);
          break;
        }
        case 'Q': {  // BINPERSID: a storage of the file
          const Ref id = pop();
          auto v = make(Value::Kind::Storage);
          v->storage = persistent_load_(*id);
          stack_.push_back(v);
          break;
        }
        case 'R': {  // REDUCE
          const Ref args = pop(), callable = pop();
          stack_.push_back(reduce(*callable, *args));
          break;
        }
        case 's': {  // SETITEM
          need(3);
          const Ref value = pop(), key = pop();
          dict(top()).items.insert(dict(top()).items.end(), {key, value});
          break;
        }
        case 'u': {  // SETITEMS
          std::vector<Ref> pairs = pop_to_mark();
          if (pairs.size() % 2) fail("holds a malformed dict");
          need(1);
          dict(top()).items.insert(dict(top()).items.end(), pairs.begin(), pairs.end());
          break;
        }
        case 'a': {  // APPEND
          need(2);
          const Ref item = pop();
          list(top()).items.push_back(item);
          break;
        }
        case 'e': {  // APPENDS
          std::vector<Ref> items = pop_to_mark();
          need(1);
          list(top()).items.insert(list(top()).items.end(), items.begin(), items.end());
          break;
        }
        case 'b':  // BUILD: a state dict's attributes (_metadata: the layers' versions) are not needed
          pop();
          need(1);
          dict(top());
          break;
        default: {
          std::ostringstream s;
          s << "holds pickle opcode 0x" << std::hex << int(op) << ", which a state dict does not need";
          fail(s.str());
        }
      }
    }
  }

  [[noreturn]] void fail(const std::string& problem) const { throw Error(file_, problem); }

 private:
  uint8_t byte() {
    const int c = in_.get();
    if (c == std::char_traits<char>::eof()) fail("is truncated: its pickle ends early");
    return static_cast<uint8_t>(c);
  }
  std::string bytes(size_t n) {
    if (n > (1u << 20)) fail("holds a pickled string too long for a state dict");
    std::string s(n, '\0');
    if (!in_.read(s.data(), static_cast<std::streamsize>(n))) fail("is truncated: its pickle ends early");
    return s;
  }
  uint64_t little_endian(size_t n) {
    uint64_t value = 0;
    for (size_t i = 0; i < n; ++i) value |= uint64_t(byte()) << (8 * i);
    return value;
  }
  std::string line() {
    std::string s;
    for (char c; (c = static_cast<char>(byte())) != '\n';) {
      s.push_back(c);
      if (s.size() > 256) fail("names a global too long for a state dict");
    }
    return s;
  }
  void need(size_t n) const {
    const size_t floor = marks_.empty() ? 0 : marks_.back();
    if (stack_.size() < floor + n) fail("holds a malformed pickle");
  }
  Ref pop() {
    need(1);
    Ref v = stack_.back();
    stack_.pop_back();
    return v;
  }
  Ref top() {
    need(1);
    return stack_.back();
  }
  Ref memo(uint64_t id) const {
    const auto found = memo_.find(id);
    if (found == memo_.end()) fail("holds a malformed pickle");
    return found->second;
  }
  std::vector<Ref> pop_to_mark() {
    if (marks_.empty()) fail("holds a malformed pickle");
    std::vector<Ref> items(stack_.begin() + static_cast<std::ptrdiff_t>(marks_.back()), stack_.end());
    stack_.resize(marks_.back());
    marks_.pop_back();
    return items;
  }
  void push_sequence(Value::Kind kind, std::vector<Ref> items) {
    auto v = make(kind);
    v->items = std::move(items);
    stack_.push_back(v);
  }
  void push_int(Value::Kind kind, int64_t value) {
    auto v = make(kind);
    v->integer = value;
    stack_.push_back(v);
  }
  void push_string(std::string text) {
    auto v = make(Value::Kind::String);
    v->text = std::move(text);
    stack_.push_back(v);
  }
  void push_global(const std::string& name) {
    const auto storage = storage_classes().find(name);
    if (name != kOrderedDict && name != kRebuildTensor && name != kRebuildParameter && storage == storage_classes().end())
      fail("is not a plain state dict: its pickle names '" + name + "', which is not read (only tensors are)");
    auto v = make(Value::Kind::Global);
    v->text = name;
    if (storage != storage_classes().end()) v->dtype = storage->second;
    stack_.push_back(v);
  }
  Value& dict(const Ref& v) const {
    if (v->kind != Value::Kind::Dict) fail("holds a malformed pickle (an item set on something not a dict)");
    return *v;
  }
  Value& list(const Ref& v) const {
    if (v->kind != Value::Kind::List) fail("holds a malformed pickle (an item appended to something not a list)");
    return *v;
  }
  std::vector<int64_t> ints(const Ref& v) const {
    if (v->kind != Value::Kind::Tuple) fail("holds a tensor with a malformed size or stride");
    std::vector<int64_t> out;
    for (const auto& item : v->items) {
      if (item->kind != Value::Kind::Int || item->integer < 0) fail("holds a tensor with a malformed size or stride");
      out.push_back(item->integer);
    }
    return out;
  }

  Ref reduce(const Value& callable, const Value& args) {
    if (callable.kind != Value::Kind::Global || args.kind != Value::Kind::Tuple) fail("holds a malformed pickle");
    const auto& a = args.items;
    if (callable.text == kOrderedDict && a.empty()) return make(Value::Kind::Dict);
    // _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
    if (callable.text == kRebuildTensor && (a.size() == 6 || a.size() == 7) && a[0]->kind == Value::Kind::Storage &&
        a[1]->kind == Value::Kind::Int) {
      auto v = make(Value::Kind::Tensor);
      TensorRef& t = v->tensor;
      t.storage = a[0]->storage;
      t.offset = a[1]->integer;
      t.sizes = ints(a[2]);
      t.strides = ints(a[3]);
      if (t.sizes.size() != t.strides.size()) fail("holds a tensor with a malformed size or stride");
      int64_t last = t.storage.offset + t.offset;  // the furthest element the tensor reaches
      bool empty = false;
      for (size_t d = 0; d < t.sizes.size(); ++d) last += (t.sizes[d] - 1) * t.strides[d], empty |= t.sizes[d] == 0;
      if (!empty && last >= t.storage.numel) fail("holds a tensor that reaches past its storage");
      return v;
    }
    // _rebuild_parameter(tensor, requires_grad, backward_hooks): a Parameter is its tensor here.
    if (callable.text == kRebuildParameter && a.size() == 3 && a[0]->kind == Value::Kind::Tensor) return a[0];
    fail("is not a plain state dict: it calls '" + callable.text + "' with arguments that are not a tensor's");
  }

  std::istream& in_;
  const std::filesystem::path& file_;
  PersistentLoad persistent_load_;
  std::vector<Ref> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<uint64_t, Ref> memo_;
};

// A persistent id: ('storage', storage class, key, location, numel) in zip files; legacy files add
// view metadata, None or (view key, offset, size).
StorageRef storage_of(const Value& id, bool legacy, const Unpickler& pickle) {
  const auto& a = id.items;
  const size_t arity = legacy ? 6 : 5;
  if (id.kind != Value::Kind::Tuple || a.size() != arity || a[0]->kind != Value::Kind::String ||
      a[0]->text != "storage" || a[1]->kind != Value::Kind::Global || a[2]->kind != Value::Kind::String ||
      a[4]->kind != Value::Kind::Int || a[4]->integer < 0 || !storage_classes().count(a[1]->text))
    pickle.fail("holds a reference to something that is not a tensor's storage");
  StorageRef s{a[2]->text, a[1]->dtype, a[4]->integer, 0};
  if (legacy && a[5]->kind != Value::Kind::None) {
    const auto& view = a[5]->items;
    if (a[5]->kind != Value::Kind::Tuple || view.size() != 3 || view[1]->kind != Value::Kind::Int ||
        view[1]->integer < 0)
      pickle.fail("holds a malformed storage view");
    s.offset = view[1]->integer;
  }
  return s;
}

// The pickle's dict of tensors, in the file's order.
std::vector<std::pair<std::string, TensorRef>> tensors_of(const Value& root, const Unpickler& pickle) {
  if (root.kind != Value::Kind::Dict) pickle.fail("does not hold a dict of tensors (a state dict)");
  std::vector<std::pair<std::string, TensorRef>> tensors;
  for (size_t i = 0; i < root.items.size(); i += 2) {
    const Value &key = *root.items[i], &value = *root.items[i + 1];
    if (key.kind != Value::Kind::String) pickle.fail("holds a dict whose keys are not names: not a state dict");
    if (value.kind != Value::Kind::Tensor)
      pickle.fail("holds '" + key.text + "', which is not a tensor: not a state dict (save model.state_dict())");
    tensors.emplace_back(key.text, value.tensor);
  }
  return tensors;
}

// Legacy files begin with this pickled magic number, then the protocol version and the system's sizes.
constexpr char kLegacyMagic[] = "\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.";
constexpr char kZipMagic[] = "PK\x03\x04";

}  // namespace

struct StateDictReader::Contents {
  std::vector<std::pair<std::string, TensorRef>> tensors;
  std::unique_ptr<caffe2::serialize::PyTorchStreamReader> zip;  // zip files
  std::map<std::string, int64_t> offsets;                       // legacy files: where each storage's bytes begin

  const TensorRef& find(const std::filesystem::path& file, const std::string& key) const {
    for (const auto& [name, ref] : tensors)
      if (name == key) return ref;
    throw Error(file, "holds no '" + key + "'");
  }
};

StateDictReader::StateDictReader(std::filesystem::path file) : file_(std::move(file)), contents_(std::make_unique<Contents>()) {
  std::ifstream in(file_, std::ios::binary);
  if (!in) throw Error(file_, std::filesystem::exists(file_) ? "cannot read" : "no such file");
  char head[sizeof kLegacyMagic - 1] = {};
  in.read(head, sizeof head);
  if (std::memcmp(head, kZipMagic, 4) == 0) {
    std::string pickle;
    try {
      contents_->zip = std::make_unique<caffe2::serialize::PyTorchStreamReader>(file_.string());
      if (!contents_->zip->hasRecord("data.pkl")) throw Error(file_, "is a zip file without data.pkl: not torch.save's");
      if (contents_->zip->hasRecord("byteorder")) {
        const auto [data, size] = contents_->zip->getRecord("byteorder");
        if (std::string(static_cast<const char*>(data.get()), size) != "little")
          throw Error(file_, "holds big-endian tensors, which are not read");
      }
      const auto [data, size] = contents_->zip->getRecord("data.pkl");
      pickle.assign(static_cast<const char*>(data.get()), size);
    } catch (const c10::Error& e) {
      throw Error(file_, "is truncated or damaged: " + e.msg().substr(0, e.msg().find('\n')));
    }
    std::istringstream stream(pickle);
    Unpickler unpickler(stream, file_, [&](const Value& id) { return storage_of(id, false, unpickler); });
    contents_->tensors = tensors_of(*unpickler.load(), unpickler);
    return;
  }
  if (!in || std::memcmp(head, kLegacyMagic, sizeof head) != 0)
    throw Error(file_, "is not a state dict torch.save wrote (neither its zip nor its legacy format)");
  std::map<std::string, StorageRef> storages;
  Unpickler unpickler(in, file_, [&](const Value& id) {
    StorageRef s = storage_of(id, true, unpickler);
    storages.emplace(s.key, s);
    return s;
  });
  const Ref version = unpickler.load(), system = unpickler.load();
  if (version->kind != Value::Kind::Int || version->integer != 1001)
    throw Error(file_, "is of a legacy format version this reader does not know");
  for (size_t i = 0; system->kind == Value::Kind::Dict && i < system->items.size(); i += 2)
    if (system->items[i]->text == "little_endian" && system->items[i + 1]->integer != 1)
      throw Error(file_, "holds big-endian tensors, which are not read");
  contents_->tensors = tensors_of(*unpickler.load(), unpickler);
  // Then the storages' keys, and each storage as its element count and its bytes.
  const Ref keys = unpickler.load();
  if (keys->kind != Value::Kind::List) throw Error(file_, "is damaged: its storage list is missing");
  const auto file_size = static_cast<int64_t>(std::filesystem::file_size(file_));
  for (const auto& key : keys->items) {
    const auto found = storages.find(key->text);
    if (found == storages.end()) throw Error(file_, "is damaged: it stores a storage no tensor uses");
    int64_t numel = 0;
    in.read(reinterpret_cast<char*>(&numel), 8);
    const int64_t at = static_cast<int64_t>(in.tellg());
    const int64_t bytes = numel * static_cast<int64_t>(c10::elementSize(found->second.dtype));
    if (!in || numel != found->second.numel || at + bytes > file_size)
      throw Error(file_, "is truncated or damaged: storage " + key->text + " is not all there");
    contents_->offsets[key->text] = at;
    in.seekg(bytes, std::ios::cur);
  }
  for (const auto& [key, ref] : contents_->tensors)
    if (!contents_->offsets.count(ref.storage.key)) throw Error(file_, "is truncated or damaged: " + key + " has no data");
}

StateDictReader::~StateDictReader() = default;

std::vector<std::string> StateDictReader::keys() const {
  std::vector<std::string> keys;
  for (const auto& entry : contents_->tensors) keys.push_back(entry.first);
  return keys;
}

bool StateDictReader::contains(const std::string& key) const {
  for (const auto& entry : contents_->tensors)
    if (entry.first == key) return true;
  return false;
}

std::vector<int64_t> StateDictReader::shape(const std::string& key) const { return contents_->find(file_, key).sizes; }

torch::Tensor StateDictReader::tensor(const std::string& key) const {
  const TensorRef& t = contents_->find(file_, key);
  const StorageRef& s = t.storage;
  const int64_t bytes = s.numel * static_cast<int64_t>(c10::elementSize(s.dtype));
  torch::Tensor storage;
  if (contents_->zip) {
    try {
      auto [data, size] = contents_->zip->getRecord("data/" + s.key);
      if (static_cast<int64_t>(size) < bytes) throw Error(file_, "is damaged: storage " + s.key + " of " + key + " is short");
      auto owner = std::make_shared<at::DataPtr>(std::move(data));
      storage = torch::from_blob(owner->get(), {s.numel}, [owner](void*) {}, torch::TensorOptions(s.dtype));
    } catch (const c10::Error& e) {
      throw Error(file_, "is truncated or damaged: " + key + ": " + e.msg().substr(0, e.msg().find('\n')));
    }
  } else {
    storage = torch::empty({s.numel}, torch::TensorOptions(s.dtype));
    std::ifstream in(file_, std::ios::binary);
    in.seekg(contents_->offsets.at(s.key));
    if (!in.read(static_cast<char*>(storage.data_ptr()), bytes)) throw Error(file_, "cannot read the data of " + key);
  }
  return storage.as_strided(t.sizes, t.strides, s.offset + t.offset).contiguous();
}

}  // namespace segnet
