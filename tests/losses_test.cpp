#include <segnet/data.h>

#include "train/losses.h"
#include "python.h"
#include "temp_dir.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <fstream>

using namespace segnet;
using namespace segnet::test;

namespace {

namespace F = torch::nn::functional;

const std::vector<Loss> kMulticlassLosses = {Loss::CrossEntropy,     Loss::Dice,
                                             Loss::Focal,            Loss::Lovasz,
                                             Loss::CrossEntropyDice, Loss::CrossEntropyFocal,
                                             Loss::CrossEntropyLovasz};

// The hand example: 1 x 3 x 1 x 2 logits of two pixels, A and B.
//   A: (ln 2, 0, 0) -> softmax (2, 1, 1) / 4 = (0.5, 0.25, 0.25), label 0
//   B: (0, ln 3, 0) -> softmax (1, 3, 1) / 5 = (0.2, 0.6, 0.2),   label 1
// Class 2 is absent from the labels.
torch::Tensor hand_logits() {
  return torch::tensor({{std::log(2.0), 0.0, 0.0}, {0.0, std::log(3.0), 0.0}}).t().reshape({1, 3, 1, 2});
}
torch::Tensor hand_labels() { return torch::tensor({0, 1}, torch::kLong).reshape({1, 1, 2}); }

// Random N x C x H x W logits in double and labels with some void pixels; every class present.
struct Logits {
  torch::Tensor logits, labels;
};
Logits random_logits(int64_t classes, uint64_t seed) {
  torch::manual_seed(seed);
  auto labels = torch::randint(classes, {2, 3, 4}, torch::kLong);
  labels.view(-1).slice(0, 0, classes).copy_(torch::arange(classes));
  labels[1][2][3] = kIgnoreLabel;
  labels[0][1][2] = kIgnoreLabel;
  return {2 * torch::randn({2, classes, 3, 4}, torch::kDouble), labels};
}

}  // namespace

TEST(Losses, NamesAndTheTasksTheyFit) {
  EXPECT_EQ(choice_from_name<Loss>("ce+lovasz"), Loss::CrossEntropyLovasz);
  EXPECT_EQ(to_string(Loss::CrossEntropyFocal), "ce+focal");
  EXPECT_EQ(losses_for(Task::Binary), "bce, dice or bce+dice");
  EXPECT_EQ(losses_for(Task::Multiclass), "ce, dice, focal, lovasz, ce+dice, ce+focal or ce+lovasz");
  EXPECT_TRUE(loss_fits(Loss::Dice, Task::Binary));
  EXPECT_TRUE(loss_fits(Loss::Dice, Task::Multiclass));
  EXPECT_FALSE(loss_fits(Loss::Lovasz, Task::Binary));
  EXPECT_FALSE(loss_fits(Loss::BinaryCrossEntropyDice, Task::Multiclass));
}

// Weights (1, 2, 3): (1 * -ln 0.5 + 2 * -ln 0.6) / (1 + 2).
TEST(Losses, CrossEntropyMatchesTheHandExample) {
  const auto weights = torch::tensor({1.0f, 2.0f, 3.0f});
  const double expected = (std::log(2.0) + 2 * -std::log(0.6)) / 3;
  EXPECT_NEAR(cross_entropy_loss(hand_logits(), hand_labels(), weights).item<double>(), expected, 1e-6);
  const Objective ce{Task::Multiclass, Loss::CrossEntropy, weights};
  EXPECT_NEAR(segmentation_loss(hand_logits(), hand_labels(), ce).item<double>(), expected, 1e-6);
}

// Gamma 2, weights (1, 2, 3): A: (1 - 0.5)^2 * -ln 0.5 = 0.25 ln 2; B: (1 - 0.6)^2 * -ln 0.6 = 0.16 * -ln 0.6;
// normalised by the weights' sum: (1 * 0.25 ln 2 + 2 * 0.16 * -ln 0.6) / 3 = 0.112250.
TEST(Losses, FocalMatchesTheHandExample) {
  const auto weights = torch::tensor({1.0f, 2.0f, 3.0f});
  const double expected = (0.25 * std::log(2.0) + 2 * 0.16 * -std::log(0.6)) / 3;
  EXPECT_NEAR(expected, 0.112250, 1e-6);
  const Objective focal{Task::Multiclass, Loss::Focal, weights};
  EXPECT_NEAR(segmentation_loss(hand_logits(), hand_labels(), focal).item<double>(), expected, 1e-6);
}

// With gamma 0 the modulating factor is 1: PyTorch's weighted cross-entropy, void ignored.
TEST(Losses, FocalWithGammaZeroIsCrossEntropy) {
  const Logits b = random_logits(4, 1);
  const auto weights = torch::tensor({0.5, 1.0, 2.0, 4.0}, torch::kDouble);
  const auto reference =
      F::cross_entropy(b.logits, b.labels, F::CrossEntropyFuncOptions().weight(weights).ignore_index(kIgnoreLabel));
  EXPECT_NEAR(focal_loss(b.logits, b.labels, weights, 0).item<double>(), reference.item<double>(), 1e-12);
  EXPECT_NEAR(cross_entropy_loss(b.logits, b.labels, weights).item<double>(), reference.item<double>(), 1e-12);
  // Gamma 2 only scales each pixel's term down by (1 - p)^2 < 1.
  EXPECT_LT(focal_loss(b.logits, b.labels, weights).item<double>(), reference.item<double>());
}

// Present classes 0 and 1 (class 2 is left out):
//   class 0: t = (1, 0), p = (0.5, 0.2):  2 * 0.5 / (0.7 + 1) = 1 / 1.7
//   class 1: t = (0, 1), p = (0.25, 0.6): 2 * 0.6 / (0.85 + 1) = 1.2 / 1.85
// loss = 1 - (1 / 1.7 + 1.2 / 1.85) / 2 = 0.381558.
TEST(Losses, DiceMatchesTheHandExample) {
  const double expected = 1 - (1 / 1.7 + 1.2 / 1.85) / 2;
  EXPECT_NEAR(expected, 0.381558, 1e-6);
  const Objective dice{Task::Multiclass, Loss::Dice, torch::ones({3})};
  EXPECT_NEAR(segmentation_loss(hand_logits(), hand_labels(), dice).item<double>(), expected, 1e-6);
}

// Binary models keep the soft Dice of one sigmoid output, smoothed by 1: logits (0, ln 3) ->
// p = (0.5, 0.75), labels (0, 1): 1 - (2 * 0.75 + 1) / (1.25 + 1 + 1) = 3 / 13.
TEST(Losses, DiceKeepsItsBinaryMeaning) {
  const auto logits = torch::tensor({0.0, std::log(3.0)}).reshape({1, 1, 1, 2});
  const Objective dice{Task::Binary, Loss::Dice, torch::ones({2})};
  EXPECT_NEAR(segmentation_loss(logits, hand_labels(), dice).item<double>(), 3.0 / 13.0, 1e-6);
}

// Two classes, three pixels; logits (0, ln(q / (1 - q))) give p(class 1) = q.
//   pixel:            1    2    3
//   label:            1    0    1
//   p(class 1):       0.8  0.6  0.3   -> errors |t - p| for both classes: 0.2 0.6 0.7
// Sorted by error: pixels 3, 2, 1. J(i): the Jaccard loss with the first i of them wrong.
//   class 1: labels in that order 1 0 1, 2 pixels of the class:
//     J = 1 - 1/2, 1 - 1/3, 1 - 0/3 = 0.5, 2/3, 1 -> steps 0.5, 1/6, 1/3
//     loss 0.7 * 0.5 + 0.6 / 6 + 0.2 / 3 = 31/60
//   class 0: labels in that order 0 1 0, 1 pixel of the class:
//     J = 1 - 1/2, 1 - 0/2, 1 - 0/3 = 0.5, 1, 1 -> steps 0.5, 0.5, 0
//     loss 0.7 * 0.5 + 0.6 * 0.5 = 39/60
// Mean over the two present classes: 70/120 = 7/12.
TEST(Losses, LovaszMatchesTheHandExample) {
  auto logit = [](double q) { return std::log(q / (1 - q)); };
  const auto logits = torch::tensor({{0.0, logit(0.8)}, {0.0, logit(0.6)}, {0.0, logit(0.3)}}).t().reshape({1, 2, 1, 3});
  const auto labels = torch::tensor({1, 0, 1}, torch::kLong).reshape({1, 1, 3});
  const Objective lovasz{Task::Multiclass, Loss::Lovasz, torch::ones({2})};
  EXPECT_NEAR(segmentation_loss(logits, labels, lovasz).item<double>(), 7.0 / 12.0, 1e-6);
}

TEST(Losses, LovaszOfAPerfectPredictionIsZero) {
  const Logits b = random_logits(5, 2);
  const auto logits = 30 * F::one_hot(b.labels.clamp_max(4), 5).movedim(-1, 1).to(torch::kDouble);
  EXPECT_NEAR(lovasz_softmax_loss(logits, b.labels).item<double>(), 0.0, 1e-9);
  EXPECT_GT(lovasz_softmax_loss(-logits, b.labels).item<double>(), 0.9);
}

// Berman et al.'s reference algorithm (lovasz_softmax_flat, classes "present"), in PyTorch from Python: one
// class at a time, its errors ordered by torch.sort. 1,536 pixels (83 void): in every class's row, each of
// the radix sort's six 11-bit passes sees more than one digit. The gradient is compared in double, where
// no two errors tie; float gives the same loss.
TEST(Losses, LovaszMatchesTheReferenceAlgorithmFromPython) {
  if (!python_has("torch")) GTEST_SKIP() << "/usr/bin/python3 has no torch: no reference from PyTorch";
  TempDir dir;
  torch::manual_seed(11);
  const auto logits = (3 * torch::randn({2, 5, 24, 32}, torch::kDouble)).requires_grad_();
  const auto labels = torch::randint(5, {2, 24, 32}, torch::kLong).masked_fill(torch::rand({2, 24, 32}) < 0.05, kIgnoreLabel);
  labels.masked_fill_(labels == 3, 2);  // class 3 absent: the reference leaves it out of the mean
  auto save = [&](const torch::Tensor& t, const char* name) {
    std::ofstream((dir.path / name).string(), std::ios::binary)
        .write(static_cast<const char*>(t.data_ptr()), static_cast<std::streamsize>(t.nbytes()));
  };
  save(logits.detach(), "z.bin");
  save(labels, "y.bin");
  const std::string d = dir.path.string() + "/";
  const std::string script =
      "import numpy, torch\n"
      "z = torch.from_numpy(numpy.fromfile(\"" + d + "z.bin\", dtype=numpy.float64).reshape(2, 5, 24, 32)).requires_grad_()\n"
      "y = torch.from_numpy(numpy.fromfile(\"" + d + "y.bin\", dtype=numpy.int64)).reshape(-1)\n"
      "p = torch.softmax(z, 1).permute(0, 2, 3, 1).reshape(-1, 5)[y != 255]\n"
      "y = y[y != 255]\n"
      "losses = []\n"
      "for c in range(5):\n"
      "    fg = (y == c).double()\n"
      "    if fg.sum() == 0: continue\n"
      "    errors, perm = torch.sort((fg - p[:, c]).abs(), 0, descending=True)\n"
      "    g = fg[perm]\n"
      "    jaccard = 1 - (g.sum() - g.cumsum(0)) / (g.sum() + (1 - g).cumsum(0))\n"
      "    jaccard[1:] = jaccard[1:] - jaccard[:-1].clone()\n"
      "    losses.append(torch.dot(errors, jaccard))\n"
      "loss = sum(losses) / len(losses)\n"
      "loss.backward()\n"
      "print(repr(float(loss)))\n"
      "z.grad.numpy().tofile(\"" + d + "grad.bin\")\n";
  const auto out = python_output(script);
  ASSERT_TRUE(out) << script;
  const double expected = std::stod(*out);
  std::vector<double> reference_grad(logits.numel());
  std::ifstream((dir.path / "grad.bin").string(), std::ios::binary)
      .read(reinterpret_cast<char*>(reference_grad.data()), static_cast<std::streamsize>(reference_grad.size() * sizeof(double)));

  const auto loss = lovasz_softmax_loss(logits, labels);
  EXPECT_NEAR(loss.item<double>(), expected, 1e-12);
  loss.backward();
  EXPECT_TRUE(torch::allclose(logits.grad().reshape(-1), torch::tensor(reference_grad, torch::kDouble), 0, 1e-12));
  EXPECT_NEAR(lovasz_softmax_loss(logits.detach().to(torch::kFloat), labels).item<double>(), expected, 1e-5);
}

TEST(Losses, SumsAreCrossEntropyPlusTheOther) {
  const Logits b = random_logits(4, 3);
  const auto w = torch::tensor({0.5, 1.0, 2.0, 4.0}, torch::kDouble);
  const double ce = cross_entropy_loss(b.logits, b.labels, w).item<double>();
  auto loss = [&](Loss l) { return segmentation_loss(b.logits, b.labels, {Task::Multiclass, l, w}).item<double>(); };
  EXPECT_NEAR(loss(Loss::CrossEntropyDice), ce + dice_loss(b.logits, b.labels).item<double>(), 1e-12);
  EXPECT_NEAR(loss(Loss::CrossEntropyFocal), ce + focal_loss(b.logits, b.labels, w).item<double>(), 1e-12);
  EXPECT_NEAR(loss(Loss::CrossEntropyLovasz), ce + lovasz_softmax_loss(b.logits, b.labels).item<double>(), 1e-12);
  EXPECT_NEAR(loss(Loss::Dice), dice_loss(b.logits, b.labels).item<double>(), 1e-12);
}

// Autograd's gradient against central differences, in double.
TEST(Losses, GradientsMatchFiniteDifferences) {
  const Logits b = random_logits(3, 4);
  const auto w = torch::tensor({0.5, 1.0, 2.0}, torch::kDouble);
  for (const Loss loss : {Loss::Dice, Loss::Focal, Loss::Lovasz, Loss::CrossEntropy}) {
    const Objective objective{Task::Multiclass, loss, w};
    const auto logits = b.logits.clone().requires_grad_();
    segmentation_loss(logits, b.labels, objective).backward();
    const auto grad = logits.grad().reshape(-1);
    const double h = 1e-6;
    double largest = 0;
    for (int64_t i = 0; i < logits.numel(); ++i) {
      auto up = b.logits.clone(), down = b.logits.clone();
      up.view(-1)[i] += h;
      down.view(-1)[i] -= h;
      const double numeric = (segmentation_loss(up, b.labels, objective).item<double>() -
                              segmentation_loss(down, b.labels, objective).item<double>()) / (2 * h);
      EXPECT_NEAR(grad[i].item<double>(), numeric, 1e-7) << to_string(loss) << " logit " << i;
      largest = std::max(largest, std::abs(numeric));
    }
    EXPECT_GT(largest, 1e-3) << to_string(loss);  // the comparison is not between zeros
  }
}

TEST(Losses, VoidPixelsChangeNeitherTheLossNorTheirGradient) {
  const Logits b = random_logits(4, 5);
  const auto void_pixels = (b.labels == kIgnoreLabel).unsqueeze(1).expand_as(b.logits);
  const auto changed = b.logits.masked_fill(void_pixels, 7.0);
  for (const Loss loss : kMulticlassLosses) {
    const Objective objective{Task::Multiclass, loss, torch::tensor({0.5, 1.0, 2.0, 4.0}, torch::kDouble)};
    const auto logits = changed.clone().requires_grad_();
    const auto value = segmentation_loss(logits, b.labels, objective);
    EXPECT_NEAR(value.item<double>(), segmentation_loss(b.logits, b.labels, objective).item<double>(), 1e-12)
        << to_string(loss);
    value.backward();
    EXPECT_EQ(logits.grad().masked_select(void_pixels).abs().max().item<double>(), 0.0) << to_string(loss);
  }
}

// A class absent from the batch leaves every loss finite with finite gradients; a batch of void only
// gives 0 and a zero gradient.
TEST(Losses, FiniteWithAnAbsentClassAndZeroWhenAllVoid) {
  const Logits b = random_logits(4, 6);
  const auto absent = b.labels.masked_fill(b.labels == 3, 0);
  const auto all_void = torch::full_like(b.labels, kIgnoreLabel);
  for (const Loss loss : kMulticlassLosses) {
    const Objective objective{Task::Multiclass, loss, torch::tensor({0.5, 1.0, 2.0, 4.0}, torch::kDouble)};
    for (const auto& labels : {absent, all_void}) {
      const auto logits = b.logits.to(torch::kFloat).requires_grad_();
      const auto value = segmentation_loss(logits, labels, objective);
      value.backward();
      EXPECT_TRUE(std::isfinite(value.item<double>())) << to_string(loss);
      EXPECT_TRUE(logits.grad().isfinite().all().item<bool>()) << to_string(loss);
      if (labels.equal(all_void)) {
        EXPECT_EQ(value.item<double>(), 0.0) << to_string(loss);
        EXPECT_EQ(logits.grad().abs().max().item<double>(), 0.0) << to_string(loss);
      }
    }
  }
}

// An independent focal loss: PyTorch's own softmax and gather, from Python.
TEST(Losses, FocalMatchesPyTorchFromPython) {
  if (!python_has("torch")) GTEST_SKIP() << "/usr/bin/python3 has no torch: no reference from PyTorch";
  const Logits b = random_logits(4, 7);
  const std::vector<double> weights = {0.5, 1.0, 2.0, 4.0};
  const auto logits = b.logits.contiguous(), labels = b.labels.contiguous();
  const std::string script =
      "import torch\n"
      "z = torch.tensor(" + python_list(std::vector<double>(logits.data_ptr<double>(), logits.data_ptr<double>() + logits.numel())) +
      ", dtype=torch.float64).reshape(2, 4, 3, 4)\n"
      "y = torch.tensor(" + python_list(std::vector<int64_t>(labels.data_ptr<int64_t>(), labels.data_ptr<int64_t>() + labels.numel())) +
      ").reshape(2, 3, 4)\n"
      "w = torch.tensor(" + python_list(weights) + ", dtype=torch.float64)\n"
      "valid = y != 255\n"
      "p = torch.softmax(z, 1).permute(0, 2, 3, 1)[valid]\n"
      "t = y[valid]\n"
      "pt = p.gather(1, t[:, None])[:, 0]\n"
      "a = w[t]\n"
      "print(repr(float((-a * (1 - pt) ** 2 * torch.log(pt)).sum() / a.sum())))\n";
  const auto out = python_output(script);
  ASSERT_TRUE(out) << script;
  const Objective focal{Task::Multiclass, Loss::Focal, torch::tensor(weights, torch::kDouble)};
  EXPECT_NEAR(segmentation_loss(b.logits, b.labels, focal).item<double>(), std::stod(*out), 1e-12);
}
