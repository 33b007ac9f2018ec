#include <segnet/checkpoint.h>
#include <segnet/error.h>
#include <segnet/pretrained.h>
#include <segnet/state_dict.h>
#include <segnet/train.h>

#include "expect_error.h"
#include "model_info.h"
#include "python.h"
#include "run_cli.h"
#include "temp_dir.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <fstream>
#include <unistd.h>

using namespace segnet;
namespace fs = std::filesystem;
using segnet::test::contains;
using segnet::test::error_of;
using segnet::test::quote;
using segnet::test::segnet_cli;
using segnet::test::TempDir;

namespace {

// torchvision's networks, saved once for all the tests by /usr/bin/python3: vgg16_bn with random
// weights (torch.manual_seed(0)) and random batch-norm statistics, so that a layer read into the wrong
// place shows; its `features` at the input of each of the 5 max pools, on one random input; and the
// weights of networks that are not vgg16_bn.
constexpr const char* kTorchvisionScript = R"PY(
import collections, sys, torch, torchvision
from torchvision.models.vgg import make_layers, cfgs
out = sys.argv[1]
torch.manual_seed(0)
vgg = torchvision.models.vgg16_bn(weights=None).eval()
with torch.no_grad():
    for m in vgg.features:
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.uniform_(0.5, 1.5); m.bias.normal_(0, 0.2)
            m.running_mean.normal_(0, 0.2); m.running_var.uniform_(0.5, 2.0); m.num_batches_tracked.fill_(7)
full = vgg.state_dict()
features = collections.OrderedDict((k, v) for k, v in full.items() if k.startswith("features."))
features._metadata = full._metadata
torch.save(features, out + "/vgg16_bn_features.pth")
torch.save(features, out + "/vgg16_bn_features_legacy.pth", _use_new_zipfile_serialization=False)
torch.save(full, out + "/vgg16_bn_full.pth")
x = torch.randn(1, 3, 64, 96)
x.numpy().astype("<f4").tofile(out + "/input.f32")
pool = 0
with torch.no_grad():
    for m in vgg.features:
        if isinstance(m, torch.nn.MaxPool2d):
            pool += 1
            x.numpy().astype("<f4").tofile(out + "/before_pool%d.f32" % pool)
        x = m(x)
plain = make_layers(cfgs["D"], batch_norm=False).state_dict()
torch.save(collections.OrderedDict(("features." + k, v) for k, v in plain.items()), out + "/vgg16_features.pth")
torch.save(torchvision.models.resnet18(weights=None).state_dict(), out + "/resnet18.pth")
)PY";

fs::path torchvision_files;  // empty when python3 or torchvision is missing

class Pretrained : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!test::python_has("torchvision")) return;
    const fs::path dir = test::unique_temp_dir("Pretrained_torchvision");
    fs::create_directories(dir);
    std::ofstream(dir / "make.py") << kTorchvisionScript;
    if (std::system(("/usr/bin/python3 " + quote(dir / "make.py") + " " + quote(dir)).c_str()) == 0)
      torchvision_files = dir;
  }
  static void TearDownTestSuite() {
    if (!torchvision_files.empty()) fs::remove_all(torchvision_files);
  }
  void SetUp() override {
    if (torchvision_files.empty()) GTEST_SKIP() << "needs /usr/bin/python3 with torchvision";
  }
  static fs::path file(const std::string& name) { return torchvision_files / name; }
};

torch::Tensor read_floats(const fs::path& file, at::IntArrayRef sizes) {
  auto t = torch::empty(sizes, torch::kFloat);
  std::ifstream in(file, std::ios::binary);
  in.read(static_cast<char*>(t.data_ptr()), static_cast<std::streamsize>(t.numel() * sizeof(float)));
  EXPECT_TRUE(in && in.peek() == std::char_traits<char>::eof()) << file << " is not " << t.sizes();
  return t;
}

EncoderStageImpl& stage(SegNet& model, int s) {
  return *model->named_children()["encoder" + std::to_string(s)]->as<EncoderStageImpl>();
}

// Weights and batch-norm statistics, by name, as copies.
std::map<std::string, torch::Tensor> state_of(torch::nn::Module& model) {
  std::map<std::string, torch::Tensor> state;
  for (const auto& p : model.named_parameters()) state[p.key()] = p.value().clone();
  for (const auto& b : model.named_buffers()) state[b.key()] = b.value().clone();
  return state;
}

bool is_encoder(const std::string& name) { return name.rfind("encoder", 0) == 0; }

void expect_state(const std::map<std::string, torch::Tensor>& expected, torch::nn::Module& model) {
  for (const auto& [name, value] : state_of(model)) EXPECT_TRUE(torch::equal(value, expected.at(name))) << name;
}

}  // namespace

// The imported encoder is torchvision's: each stage's output before its pool matches `features` at
// that point, in eval mode, fp32. Tolerance: 1e-4 of the largest activation (a different summation
// order in the convolutions can change the last bits; a misplaced layer changes everything).
TEST_F(Pretrained, ZipAndLegacyFilesGiveTorchvisionsActivationsBeforeEachPool) {
  for (const char* name : {"vgg16_bn_features.pth", "vgg16_bn_features_legacy.pth"}) {
    SCOPED_TRACE(name);
    SegNet model(SegNetOptions(Model::SegNet, 11));
    load_vgg16_bn_encoder(model, file(name));
    model->eval();
    torch::NoGradGuard no_grad;
    torch::Tensor x = read_floats(file("input.f32"), {1, 3, 64, 96});
    for (int s = 1; s <= 5; ++s) {
      const torch::Tensor ours = stage(model, s).convs->forward(x);
      const torch::Tensor theirs = read_floats(file("before_pool" + std::to_string(s) + ".f32"), ours.sizes());
      const double scale = theirs.abs().max().item<double>(), diff = (ours - theirs).abs().max().item<double>();
      EXPECT_LE(diff, 1e-4 * scale) << "stage " << s << ": activations up to " << scale;
      std::printf("%s stage %d: max |difference| %.3g, largest activation %.3g\n", name, s, diff, scale);
      x = std::get<0>(stage(model, s).pool(ours));
    }
  }
}

// The file as users download it holds the classifier too; it is skipped, and the encoder is the same.
TEST_F(Pretrained, AFullStateDictWithItsClassifierGivesTheSameEncoder) {
  const StateDictReader full(file("vgg16_bn_full.pth"));
  ASSERT_TRUE(full.contains("classifier.6.weight"));
  EXPECT_EQ(full.shape("classifier.6.weight"), (std::vector<int64_t>{1000, 4096}));
  SegNet from_full(SegNetOptions(Model::BayesianSegNet, 11)), from_features(SegNetOptions(Model::BayesianSegNet, 11));
  load_vgg16_bn_encoder(from_full, file("vgg16_bn_full.pth"));
  load_vgg16_bn_encoder(from_features, file("vgg16_bn_features.pth"));
  const auto features = state_of(*from_features);
  for (const auto& [name, value] : state_of(*from_full))
    if (is_encoder(name)) EXPECT_TRUE(torch::equal(value, features.at(name))) << name;
  EXPECT_EQ(state_of(*from_full).at("encoder5.convs.2.bn.num_batches_tracked").item<int64_t>(), 7);
}

TEST_F(Pretrained, ReaderGivesTheTensorsOfBothFormatsAlike) {
  const StateDictReader zip(file("vgg16_bn_features.pth")), legacy(file("vgg16_bn_features_legacy.pth"));
  ASSERT_EQ(zip.keys(), legacy.keys());
  EXPECT_EQ(zip.keys().front(), "features.0.weight");
  for (const auto& key : zip.keys()) {
    EXPECT_EQ(zip.tensor(key).dtype(), legacy.tensor(key).dtype()) << key;
    EXPECT_TRUE(torch::equal(zip.tensor(key), legacy.tensor(key))) << key;
  }
  EXPECT_EQ(zip.tensor("features.1.num_batches_tracked").dtype(), torch::kLong);
}

TEST_F(Pretrained, Vgg16WithoutBatchNormIsAnErrorThatSaysSo) {
  SegNet model(SegNetOptions(Model::SegNet, 11));
  const std::string e = error_of([&] { load_vgg16_bn_encoder(model, file("vgg16_features.pth")); });
  EXPECT_TRUE(contains(e, file("vgg16_features.pth").string())) << e;
  EXPECT_TRUE(contains(e, "not followed by batch norm")) << e;
}

TEST_F(Pretrained, ResNetWeightsAreAnErrorNamingTheFile) {
  SegNet model(SegNetOptions(Model::SegNet, 11));
  const std::string e = error_of([&] { load_vgg16_bn_encoder(model, file("resnet18.pth")); });
  EXPECT_TRUE(contains(e, file("resnet18.pth").string())) << e;
  EXPECT_TRUE(contains(e, "no features.* weights")) << e;
  EXPECT_TRUE(contains(e, "conv1.weight")) << e;
}

TEST_F(Pretrained, TruncatedFilesAreErrorsAndLeaveTheModelAsItWas) {
  TempDir dir;
  for (const char* name : {"vgg16_bn_features.pth", "vgg16_bn_features_legacy.pth"}) {
    const std::string bytes = test::slurp(file(name));
    for (size_t keep : {bytes.size() / 2, bytes.size() - 1, size_t(200)}) {
      const fs::path cut = dir.path / ("cut_" + std::to_string(keep) + name);
      std::ofstream(cut, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(keep));
      SegNet model(SegNetOptions(Model::SegNet, 11));
      const auto before = state_of(*model);
      const std::string e = error_of([&] { load_vgg16_bn_encoder(model, cut); });
      EXPECT_TRUE(contains(e, cut.string())) << e;
      EXPECT_TRUE(contains(e, "truncated")) << e;
      expect_state(before, *model);
    }
  }
}

TEST(PretrainedReader, RefusesPicklesThatCallAnythingButTensorRebuilding) {
  TempDir dir;
  const fs::path evil = dir.path / "evil.pth";
  // A legacy header, then a pickle that would run os.system.
  using namespace std::string_literals;
  std::ofstream(evil, std::ios::binary)
      << "\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.\x80\x02M\xe9\x03.\x80\x02}q\x00."s
      << "\x80\x02" "cos\nsystem\nX\x04\x00\x00\x00" "true\x85R."s;
  const std::string e = error_of([&] { StateDictReader reader(evil); });
  EXPECT_TRUE(contains(e, evil.string())) << e;
  EXPECT_TRUE(contains(e, "'os.system'")) << e;
  std::ofstream(dir.path / "text.pth") << "not weights";
  EXPECT_TRUE(contains(error_of([&] { StateDictReader reader(dir.path / "text.pth"); }), "not a state dict torch.save wrote"));
}

TEST(PretrainedOptions, EncoderWeightsNeedAVgg16Encoder) {
  TempDir dir;
  for (Model model : {Model::SegNetBasic, Model::BayesianSegNetBasic}) {
    TrainOptions o;
    o.data = dir.path, o.out = dir.path / "run", o.model = model, o.encoder_weights = dir.path / "vgg16_bn.pth";
    try {
      validate(o);
      ADD_FAILURE() << "no error for " << to_string(model);
    } catch (const OptionError& e) {
      EXPECT_EQ(e.option(), "encoder_weights");
      EXPECT_TRUE(contains(e.problem(), to_string(model))) << e.what();
    }
    SegNet basic(SegNetOptions(model, 11));
    EXPECT_TRUE(contains(error_of([&] { load_vgg16_bn_encoder(basic, o.encoder_weights); }), "no VGG16 encoder"));
  }
  const auto r = segnet_cli("train --data " + quote(dir.path) + " --model segnet-basic --encoder-weights " +
                                quote(dir.path / "vgg16_bn.pth") + " --out " + quote(dir.path / "run"),
                            dir.path);
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(contains(r.err, "--encoder-weights")) << r.err;
  EXPECT_TRUE(contains(r.err, "segnet-basic")) << r.err;
}

TEST(PretrainedInit, AnotherClassCountReinitialisesOnlyTheClassifier) {
  torch::manual_seed(1);
  SegNet trained(SegNetOptions(Model::SegNetBasic, 5));
  const auto trained_state = state_of(*trained);
  for (int64_t classes : {5, 3}) {
    torch::manual_seed(2);
    SegNet model(SegNetOptions(Model::SegNetBasic, classes));
    const auto fresh = state_of(*model);
    init_from(model, trained, "trained.pt");
    for (const auto& [name, value] : state_of(*model)) {
      const bool classifier = name.rfind("classifier.", 0) == 0;
      const auto& expected = classifier && classes != 5 ? fresh.at(name) : trained_state.at(name);
      EXPECT_TRUE(torch::equal(value, expected)) << name << " with " << classes << " classes";
    }
  }
}

TEST(PretrainedInit, AnotherNetworkIsAnErrorNamingTheCheckpoint) {
  TempDir dir;
  const fs::path basic = dir.path / "basic.pt";
  SegNet trained(SegNetOptions(Model::SegNetBasic, 5));
  save_checkpoint(basic, test::test_model_info(Model::SegNetBasic, 5, {24, 32}), trained, nullptr, {});
  synthesize_dataset({dir.path / "data", 6, {24, 32}});
  const auto r = segnet_cli("train --data " + quote(dir.path / "data") + " --model segnet --init " + quote(basic) +
                                " --size 24x32 --out " + quote(dir.path / "run"),
                            dir.path);
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(contains(r.err, "--init")) << r.err;
  EXPECT_TRUE(contains(r.err, basic.string())) << r.err;
  EXPECT_TRUE(contains(r.err, "'segnet-basic'")) << r.err;
  SegNet transposed(SegNetOptions(Model::SegNetBasic, 5).upsampling(Upsampling::Transposed));
  try {
    init_from(transposed, trained, basic);
    ADD_FAILURE() << "no error for another decoder";
  } catch (const OptionError& e) {
    EXPECT_EQ(e.option(), "init");
  }
}

// Fine-tuning starts a new run: epoch 1, fresh optimizer, the checkpoint's normalisation, recorded so
// that the run resumes.
TEST(PretrainedInit, ARunFromACheckpointKeepsItsNormalisationAndCountsEpochsAfresh) {
  TempDir dir;
  synthesize_dataset({dir.path / "data", 10, {24, 32}});
  const fs::path start = dir.path / "start.pt";
  const ModelInfo info = test::test_model_info(Model::SegNetBasic, 3, {24, 32});
  SegNet trained(info.options());
  TrainState state;
  state.epoch = 7;
  save_checkpoint(start, info, trained, nullptr, state);
  TrainOptions o;
  o.data = dir.path / "data", o.out = dir.path / "run", o.model = Model::SegNetBasic, o.size = {24, 32};
  o.batch = 4, o.epochs = 1, o.init = start;
  ASSERT_EQ(train(o).size(), 1u);
  const Checkpoint last = load_checkpoint(o.out / "last.pt");
  EXPECT_EQ(last.state.epoch, 1);
  EXPECT_EQ(last.info.norm.mean, info.norm.mean);
  EXPECT_EQ(last.info.norm.std, info.norm.std);
  EXPECT_EQ(last.info.classes.size(), 5u);  // the new dataset's
  const auto config = nlohmann::json::parse(test::slurp(o.out / "config.json"));
  EXPECT_EQ(config["options"]["init"], start.string());
  o.resume = true, o.epochs = 2;
  EXPECT_EQ(train(o).size(), 1u);
}

TEST_F(Pretrained, ARunFromEncoderWeightsNormalisesAsImageNetAndRecordsTheFile) {
  TempDir dir;
  synthesize_dataset({dir.path / "data", 5, {32, 32}});
  TrainOptions o;
  o.data = dir.path / "data", o.out = dir.path / "run", o.model = Model::SegNet, o.size = {32, 32};
  o.batch = 4, o.epochs = 1, o.encoder_weights = file("vgg16_bn_features_legacy.pth");
  ASSERT_EQ(train(o).size(), 1u);
  const Checkpoint last = load_checkpoint(o.out / "last.pt");
  EXPECT_EQ(last.info.norm.mean, imagenet_normalization().mean);
  EXPECT_EQ(last.info.norm.std, imagenet_normalization().std);
  const auto config = nlohmann::json::parse(test::slurp(o.out / "config.json"));
  EXPECT_EQ(config["options"]["encoder_weights"], o.encoder_weights.string());
  EXPECT_EQ(config["normalization"]["mean"].get<std::vector<float>>()[0], 0.485f);
}
