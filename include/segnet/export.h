#pragma once
// A trained model as a self-contained ONNX graph, for runtimes other than segnet (ONNX Runtime, OpenCV DNN).
#include <segnet/checkpoint.h>
#include <segnet/choices.h>

#include <cstdint>
#include <filesystem>

namespace segnet {

struct OnnxExportOptions {
  ExportOutput output = ExportOutput::Logits;
  LabelType label_type = LabelType::UInt8;  // for ExportOutput::Labels
  // Height and width free in the graph; otherwise fixed at the checkpoint's training size. The batch is always free.
  bool dynamic_size = false;
};

struct OnnxExportReport {
  int64_t opset = 0;
  int64_t ir_version = 0;
  int64_t nodes = 0;
  int64_t bytes = 0;  // of the written file
  bool bayesian = false;  // the model had dropout, exported as identity (its deterministic network)
};

// Input "image": N x 3 x H x W float RGB 0..255 (normalised inside the graph). Output "logits"
// (N x K x H x W), "probabilities" (N x K x H x W; binary models: background, foreground) or "labels"
// (N x H x W). Batch norm is folded into the convolutions. The graph passes ONNX's checker and strict
// shape inference before it is written, atomically.
OnnxExportReport export_onnx(const ModelInfo& info, const SegNet& model, const std::filesystem::path& out,
                             const OnnxExportOptions& options = {});

}  // namespace segnet
