#include <segnet/error.h>
#include <segnet/export.h>
#include <segnet/files.h>

#include "common/input_range_json.h"

#include <nlohmann/json.hpp>
#include <onnx/checker.h>
#include <onnx/onnx-ml.pb.h>
#include <onnx/shape_inference/implementation.h>
#include <torch/torch.h>

#include <fstream>
#include <cctype>
#include <limits>
#include <optional>

namespace segnet {

namespace {

constexpr int64_t kOpset = 13;

// Builds the graph node by node; every value gets a fresh name.
class GraphBuilder {
 public:
  explicit GraphBuilder(onnx::GraphProto* graph) : graph_(graph) {}

  std::string fresh(const std::string& hint) { return hint + "_" + std::to_string(counter_++); }

  onnx::NodeProto* node(const std::string& op, const std::vector<std::string>& inputs,
                        const std::vector<std::string>& outputs) {
    auto* n = graph_->add_node();
    n->set_op_type(op);
    n->set_name(op + "_" + std::to_string(graph_->node_size()));
    for (const auto& i : inputs) n->add_input(i);
    for (const auto& o : outputs) n->add_output(o);
    return n;
  }
  // One-output node; returns the output's name.
  std::string op(const std::string& op, const std::vector<std::string>& inputs) {
    const auto out = fresh(op);
    node(op, inputs, {out});
    return out;
  }

  std::string tensor(const torch::Tensor& t, const std::string& hint) {
    const auto c = t.detach().to(torch::kFloat).contiguous().cpu();
    auto* init = graph_->add_initializer();
    init->set_name(fresh(hint));
    init->set_data_type(onnx::TensorProto::FLOAT);
    for (int64_t d : c.sizes()) init->add_dims(d);
    init->set_raw_data(std::string(static_cast<const char*>(c.data_ptr()), c.numel() * sizeof(float)));
    return init->name();
  }
  std::string ints(const std::vector<int64_t>& values, const std::string& hint) {
    auto* init = graph_->add_initializer();
    init->set_name(fresh(hint));
    init->set_data_type(onnx::TensorProto::INT64);
    init->add_dims(static_cast<int64_t>(values.size()));
    for (int64_t v : values) init->add_int64_data(v);
    return init->name();
  }

 private:
  onnx::GraphProto* graph_;
  int counter_ = 0;
};

void set_ints(onnx::NodeProto* n, const std::string& name, const std::vector<int64_t>& values) {
  auto* a = n->add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::INTS);
  for (int64_t v : values) a->add_ints(v);
}
void set_int(onnx::NodeProto* n, const std::string& name, int64_t value) {
  auto* a = n->add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::INT);
  a->set_i(value);
}
void set_string(onnx::NodeProto* n, const std::string& name, const std::string& value) {
  auto* a = n->add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::STRING);
  a->set_s(value);
}

void add_value_info(onnx::ValueInfoProto* v, const std::string& name, int32_t type,
                    const std::vector<std::string>& dims) {
  v->set_name(name);
  auto* t = v->mutable_type()->mutable_tensor_type();
  t->set_elem_type(type);
  for (const auto& d : dims) {
    auto* dim = t->mutable_shape()->add_dim();
    if (!d.empty() && std::isdigit(static_cast<unsigned char>(d[0]))) dim->set_dim_value(std::stoll(d));
    else dim->set_dim_param(d);
  }
}

struct Exporter {
  GraphBuilder& g;
  std::optional<Size2> fixed;  // the input's height and width when they are not free

  // Height and width of `x` (a 1-D int64 [H, W]), computed in the graph.
  std::string spatial_shape(const std::string& x) {
    return g.op("Slice", {g.op("Shape", {x}), g.ints({2}, "from"), g.ints({4}, "to"), g.ints({0}, "axes")});
  }
  // Crops `x` to `like`'s height and width; a no-op skipped when the sizes are known to be equal already.
  std::string crop_to(const std::string& x, const std::string& like, std::optional<std::pair<int64_t, int64_t>> size) {
    if (size) {
      if (size->first % 2 == 0 && size->second % 2 == 0) return x;
      return g.op("Slice", {x, g.ints({0, 0}, "starts"), g.ints({size->first, size->second}, "ends"), g.ints({2, 3}, "axes")});
    }
    return g.op("Slice", {x, g.ints({0, 0}, "starts"), spatial_shape(like), g.ints({2, 3}, "axes")});
  }

  std::string conv(const std::string& x, const torch::nn::Conv2d& c, bool relu) {
    const auto& o = c->options;
    const int64_t k = (*o.kernel_size())[0], d = (*o.dilation())[0];
    const int64_t pad = d * (k / 2);  // "same" padding, as every convolution of the model has
    const auto out = g.fresh("conv");
    auto* n = g.node("Conv", {x, g.tensor(c->weight, "weight"), g.tensor(c->bias, "bias")}, {out});
    set_ints(n, "kernel_shape", {k, k});
    set_ints(n, "dilations", {d, d});
    set_ints(n, "pads", {pad, pad, pad, pad});
    return relu ? g.op("Relu", {out}) : out;
  }

  std::string convs(std::string x, const torch::nn::Sequential& blocks) {
    for (const auto& m : blocks->children()) {
      const auto* block = m->as<ConvBlockImpl>();
      x = conv(x, block->conv, block->relu);
    }
    return x;
  }
};

std::string json_metadata(const ModelInfo& info, const std::string& key) {
  nlohmann::json j;
  if (key == "classes") {
    j = nlohmann::json::array();
    for (const auto& c : info.classes) j.push_back({{"name", c.name}, {"rgb", {c.rgb[0], c.rgb[1], c.rgb[2]}}});
  } else if (key == "normalization") {
    j = {{"mean", info.norm.mean}, {"std", info.norm.std}, {"input_range", "0..255 RGB"}};
  }
  return j.dump();
}

}  // namespace

OnnxExportReport export_onnx(const ModelInfo& info, const SegNet& source, const std::filesystem::path& out,
                             const OnnxExportOptions& options) {
  // Checked first, so that a typo costs no export. A missing folder is an error rather than created:
  // a misspelt path would otherwise hide the model somewhere unexpected.
  if (std::filesystem::is_directory(out)) throw Error(out, "is a folder; give the .onnx file to write");
  const auto folder = out.parent_path();
  if (!folder.empty() && !std::filesystem::is_directory(folder)) throw Error(out, "its folder does not exist");
  SegNet model = copy_model(source);
  model->eval();
  model->fold_batch_norm();
  const LayerPlan plan = layer_plan(info.model);

  onnx::ModelProto proto;
  proto.set_ir_version(onnx::IR_VERSION);
  proto.set_producer_name("segnet");
  proto.set_model_version(1);
  auto* opset = proto.add_opset_import();
  opset->set_domain("");
  opset->set_version(kOpset);
  auto* graph = proto.mutable_graph();
  graph->set_name(to_string(info.model));
  GraphBuilder g(graph);
  Exporter e{g, options.dynamic_size ? std::nullopt : std::optional<Size2>(info.size)};

  const std::string H = e.fixed ? std::to_string(e.fixed->height) : "height";
  const std::string W = e.fixed ? std::to_string(e.fixed->width) : "width";
  add_value_info(graph->add_input(), "image", onnx::TensorProto::FLOAT, {"batch", "3", H, W});

  // (x / 255 - mean) / std as one multiply and one subtraction.
  torch::Tensor scale = torch::empty({1, 3, 1, 1}), shift = torch::empty({1, 3, 1, 1});
  for (int c = 0; c < 3; ++c) {
    scale[0][c][0][0] = 1.0f / (255.0f * info.norm.std[c]);
    shift[0][c][0][0] = info.norm.mean[c] / info.norm.std[c];
  }
  std::string x = g.op("Sub", {g.op("Mul", {"image", g.tensor(scale, "scale")}), g.tensor(shift, "shift")});

  const auto children = model->named_children();
  const size_t stages = plan.encoder.size();
  std::vector<std::string> stage_inputs, indices;
  std::vector<std::optional<std::pair<int64_t, int64_t>>> sizes;
  std::optional<std::pair<int64_t, int64_t>> size;
  if (e.fixed) size = std::make_pair(e.fixed->height, e.fixed->width);
  for (size_t s = 0; s < stages; ++s) {
    const auto* stage = children["encoder" + std::to_string(s + 1)]->as<EncoderStageImpl>();
    stage_inputs.push_back(x);
    sizes.push_back(size);
    x = e.convs(x, stage->convs);
    // Ceil-mode pooling as padding to even sizes with -inf then plain pooling, so that the indices are
    // flat positions in the even-sized plane that MaxUnpool rebuilds; a crop then restores odd sizes.
    std::string padded = x;
    const bool odd = !size || size->first % 2 || size->second % 2;
    if (odd) {
      const std::string pads =
          size ? g.ints({0, 0, 0, 0, 0, 0, size->first % 2, size->second % 2}, "pads")
               : g.op("Concat", {g.ints({0, 0, 0, 0, 0, 0}, "zeros"), g.op("Mod", {e.spatial_shape(x), g.ints({2}, "two")})});
      if (!size) set_int(graph->mutable_node(graph->node_size() - 1), "axis", 0);
      const std::string lowest = g.tensor(torch::tensor(-std::numeric_limits<float>::infinity()), "lowest");
      auto* pad = g.node("Pad", {x, pads, lowest}, {padded = g.fresh("pad")});
      set_string(pad, "mode", "constant");
    }
    const auto pooled = g.fresh("pool"), idx = g.fresh("indices");
    auto* pool = g.node("MaxPool", {padded}, {pooled, idx});
    set_ints(pool, "kernel_shape", {2, 2});
    set_ints(pool, "strides", {2, 2});
    x = pooled;
    indices.push_back(idx);
    if (size) size = std::make_pair((size->first + 1) / 2, (size->second + 1) / 2);
  }
  for (size_t i = 0; i < stages; ++i) {
    const size_t s = stages - 1 - i;
    const auto* stage = children["decoder" + std::to_string(s + 1)]->as<DecoderStageImpl>();
    if (stage->unpool) {
      const auto up = g.fresh("unpool");
      auto* n = g.node("MaxUnpool", {x, indices[s]}, {up});
      set_ints(n, "kernel_shape", {2, 2});
      set_ints(n, "strides", {2, 2});
      x = e.crop_to(up, stage_inputs[s], sizes[s]);
    } else if (stage->upconv) {
      const auto up = g.fresh("upconv");
      auto* n = g.node("ConvTranspose", {x, g.tensor(stage->upconv->weight, "weight"), g.tensor(stage->upconv->bias, "bias")}, {up});
      set_ints(n, "kernel_shape", {2, 2});
      set_ints(n, "strides", {2, 2});
      x = e.crop_to(up, stage_inputs[s], sizes[s]);
    } else {
      // align_corners=false is ONNX's half_pixel; the target is the encoder stage's input size.
      const auto up = g.fresh("resize");
      std::vector<std::string> in = {x, ""};
      if (sizes[s] && sizes[s]->first % 2 == 0 && sizes[s]->second % 2 == 0) {
        in.push_back(g.tensor(torch::tensor({1.f, 1.f, 2.f, 2.f}), "scales"));
      } else {
        const auto batch_channels = g.op("Slice", {g.op("Shape", {x}), g.ints({0}, "from"), g.ints({2}, "to"), g.ints({0}, "axes")});
        const auto target = g.op("Concat", {batch_channels, e.spatial_shape(stage_inputs[s])});
        set_int(graph->mutable_node(graph->node_size() - 1), "axis", 0);
        in.push_back("");
        in.push_back(target);
      }
      auto* n = g.node("Resize", in, {up});
      set_string(n, "mode", "linear");
      set_string(n, "coordinate_transformation_mode", "half_pixel");
      x = up;
    }
    x = e.convs(x, stage->convs);  // Bayesian dropout: identity, the deterministic network
  }
  const auto logits_value = e.conv(x, torch::nn::Conv2d(std::dynamic_pointer_cast<torch::nn::Conv2dImpl>(children["classifier"])), false);

  const std::string K = std::to_string(info.binary() ? 1 : info.classes.size());
  auto rename_last = [&](const std::string& name) {
    graph->mutable_node(graph->node_size() - 1)->set_output(0, name);
  };
  switch (options.output) {
    case ExportOutput::Logits:
      rename_last("logits");
      add_value_info(graph->add_output(), "logits", onnx::TensorProto::FLOAT, {"batch", K, H, W});
      break;
    case ExportOutput::Probabilities:
      if (info.binary()) {
        const auto fg = g.op("Sigmoid", {logits_value});
        g.node("Concat", {g.op("Sub", {g.tensor(torch::tensor(1.0f), "one"), fg}), fg}, {"probabilities"});
        set_int(graph->mutable_node(graph->node_size() - 1), "axis", 1);
      } else {
        set_int(g.node("Softmax", {logits_value}, {"probabilities"}), "axis", 1);
      }
      add_value_info(graph->add_output(), "probabilities", onnx::TensorProto::FLOAT,
                     {"batch", info.binary() ? "2" : K, H, W});
      break;
    case ExportOutput::Labels: {
      std::string ids;
      if (info.binary()) {  // foreground where sigmoid >= 0.5, as Segmenter's default threshold
        ids = g.op("GreaterOrEqual", {logits_value, g.tensor(torch::tensor(0.0f), "zero")});
        ids = g.op("Squeeze", {ids, g.ints({1}, "axes")});
      } else {
        ids = g.fresh("argmax");
        auto* n = g.node("ArgMax", {logits_value}, {ids});
        set_int(n, "axis", 1);
        set_int(n, "keepdims", 0);
      }
      const bool u8 = options.label_type == LabelType::UInt8;
      set_int(g.node("Cast", {ids}, {"labels"}), "to", u8 ? onnx::TensorProto::UINT8 : onnx::TensorProto::INT64);
      add_value_info(graph->add_output(), "labels", u8 ? onnx::TensorProto::UINT8 : onnx::TensorProto::INT64,
                     {"batch", H, W});
      break;
    }
  }

  auto meta = [&](const std::string& key, const std::string& value) {
    auto* p = proto.add_metadata_props();
    p->set_key(key);
    p->set_value(value);
  };
  meta("model", to_string(info.model));
  meta("task", to_string(info.task));
  meta("decoder", to_string(info.upsampling));
  meta("output", to_string(options.output));
  meta("classes", json_metadata(info, "classes"));
  meta("normalization", json_metadata(info, "normalization"));
  meta("training_size", std::to_string(info.size.height) + "x" + std::to_string(info.size.width));
  // 16-bit images: the stored values that map to the input's 0 and 255.
  if (info.input_range) meta("input_range_16bit", input_range_json(info.input_range).dump());

  try {
    onnx::checker::check_model(proto);
    onnx::shape_inference::InferShapes(proto, onnx::OpSchemaRegistry::Instance(),
                                       onnx::ShapeInferenceOptions(/*check_type=*/true, /*strict_mode=*/1));
  } catch (const std::exception& ex) {
    throw Error(out, std::string("the exported graph fails ONNX's checks: ") + ex.what());
  }
  write_atomically(out, [&](const std::filesystem::path& temporary) {
    std::ofstream file(temporary, std::ios::binary);
    if (!file || !proto.SerializeToOstream(&file) || !file.flush()) throw Error(out, "cannot write");
  });

  OnnxExportReport report;
  report.opset = kOpset;
  report.ir_version = proto.ir_version();
  report.nodes = graph->node_size();
  report.bytes = static_cast<int64_t>(std::filesystem::file_size(out));
  report.bayesian = plan.dropout_stages > 0;
  return report;
}

}  // namespace segnet
