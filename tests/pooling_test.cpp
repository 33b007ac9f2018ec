#include <segnet/model.h>

#include <gtest/gtest.h>
#include <torch/torch.h>

using namespace segnet;

// Every pooled value goes back to the position of its maximum; the rest of the plane is zero.
TEST(MaxUnpool, PutsEachValueBackAtItsArgmaxForOddSizes) {
  torch::manual_seed(3);
  for (auto hw : std::vector<std::pair<int64_t, int64_t>>{{7, 9}, {8, 8}, {97, 131}, {1, 5}}) {
    const auto x = torch::randn({2, 3, hw.first, hw.second});
    MaxPoolWithIndices pool;
    MaxUnpool unpool;
    auto [pooled, indices] = pool(x);
    EXPECT_EQ(pooled.size(2), (hw.first + 1) / 2);  // ceil mode: no row or column is dropped
    EXPECT_EQ(pooled.size(3), (hw.second + 1) / 2);
    const auto restored = unpool->forward(pooled, indices, {hw.first, hw.second});
    ASSERT_EQ(restored.sizes(), x.sizes());
    // Every window's maximum is where it was, and nothing else survives.
    const auto kept = restored != 0;
    EXPECT_TRUE(torch::equal(restored.masked_select(kept), x.masked_select(kept)));
    EXPECT_EQ(kept.sum().item<int64_t>(), pooled.numel());
    // Each kept value is the maximum of its 2x2 window.
    const auto window_max = torch::max_pool2d(x, {2, 2}, {2, 2}, {0, 0}, {1, 1}, true);
    EXPECT_TRUE(torch::equal(pooled, window_max));
  }
}

TEST(MaxUnpool, GradientMatchesFiniteDifferences) {
  torch::manual_seed(5);
  const auto x = torch::randn({1, 2, 5, 7}, torch::kDouble);
  MaxPoolWithIndices pool;
  MaxUnpool unpool;
  auto [pooled, indices] = pool(x);
  auto input = pooled.detach().clone().requires_grad_(true);
  const auto projection = torch::randn({1, 2, 5, 7}, torch::kDouble);
  auto f = [&](const torch::Tensor& v) { return (unpool->forward(v, indices, {5, 7}) * projection).sum(); };
  f(input).backward();
  const auto analytic = input.grad();
  auto numeric = torch::zeros_like(input);
  const double eps = 1e-6;
  for (int64_t i = 0; i < input.numel(); ++i) {
    auto plus = input.detach().clone(), minus = input.detach().clone();
    plus.view(-1)[i] += eps;
    minus.view(-1)[i] -= eps;
    numeric.view(-1)[i] = (f(plus) - f(minus)).item<double>() / (2 * eps);
  }
  EXPECT_TRUE(torch::allclose(analytic, numeric, 1e-5, 1e-7));
  // The gradient of each pooled value is the projection at its argmax position.
  EXPECT_TRUE(torch::allclose(analytic, projection.view({1, 2, -1}).gather(2, indices.view({1, 2, -1})).view_as(input)));
}

TEST(MaxPoolWithIndices, GradientFlowsOnlyToArgmax) {
  const auto x = torch::tensor({1., 5., 2., 0., 3., 4., 9., 8., 7., 6., -1., -2.}, torch::kDouble)
                     .view({1, 1, 3, 4})
                     .requires_grad_(true);
  MaxPoolWithIndices pool;
  auto [pooled, indices] = pool(x);
  pooled.sum().backward();
  // Windows (ceil mode): {1,5,3,4}->5, {2,0,9,8}->9, {7,6}->7, {-1,-2}->-1.
  const auto expected =
      torch::tensor({0., 1., 0., 0., 0., 0., 1., 0., 1., 0., 1., 0.}, torch::kDouble).view({1, 1, 3, 4});
  EXPECT_TRUE(torch::equal(x.grad(), expected));
}

// Pooling keeps its layout and precision, as the channels-last bf16 path needs.
TEST(MaxPoolWithIndices, MatchesLibTorchInEveryLayoutAndPrecision) {
  torch::manual_seed(7);
  const auto x = torch::randn({2, 5, 9, 13});
  const auto [expected, expected_idx] = torch::max_pool2d_with_indices(x, {2, 2}, {2, 2}, {0, 0}, {1, 1}, true);
  MaxPoolWithIndices pool;
  for (auto format : {at::MemoryFormat::Contiguous, at::MemoryFormat::ChannelsLast}) {
    auto [pooled, idx] = pool(x.contiguous(format));
    EXPECT_TRUE(torch::equal(pooled, expected));
    EXPECT_TRUE(torch::equal(idx, expected_idx));
    EXPECT_TRUE(pooled.is_contiguous(format));
    auto [pooled16, idx16] = pool(x.to(torch::kBFloat16).contiguous(format));
    EXPECT_EQ(pooled16.scalar_type(), torch::kBFloat16);
    EXPECT_TRUE(torch::equal(pooled16, expected.to(torch::kBFloat16)));  // max commutes with rounding
  }
}

TEST(MaxUnpool, ChannelsLastAndBf16AgreeWithPlainLayoutIncludingGradients) {
  torch::manual_seed(8);
  const auto x = torch::randn({2, 4, 7, 10});
  MaxPoolWithIndices pool;
  MaxUnpool unpool;
  auto run = [&](const torch::Tensor& input) {
    auto leaf = input.detach().requires_grad_(true);
    auto [pooled, idx] = pool(leaf);
    auto out = unpool->forward(pooled * 2, idx, {7, 10});
    (out * torch::arange(out.numel()).view(out.sizes()).to(out.dtype())).sum().backward();
    return std::make_pair(out.detach().to(torch::kFloat).contiguous(), leaf.grad().to(torch::kFloat).contiguous());
  };
  const auto [plain, plain_grad] = run(x);
  const auto [cl, cl_grad] = run(x.contiguous(at::MemoryFormat::ChannelsLast));
  EXPECT_TRUE(torch::equal(plain, cl));
  EXPECT_TRUE(torch::equal(plain_grad, cl_grad));
  EXPECT_TRUE(torch::equal(plain, torch::max_unpool2d(std::get<0>(pool(x)) * 2, std::get<1>(pool(x)), {7, 10})));
  const auto [bf, bf_grad] = run(x.to(torch::kBFloat16).contiguous(at::MemoryFormat::ChannelsLast));
  EXPECT_TRUE(torch::allclose(bf, plain, 1e-2, 1e-2));
  EXPECT_TRUE(torch::allclose(bf_grad, plain_grad, 1e-2, 1.0));
}

// The library's own kernels (unpooling, int8 pooling) split their loops with ATen's parallel_for, a
// header template whose `#pragma omp parallel` does nothing unless the code is compiled with OpenMP.
// The tests compile with the library's flags (they share its precompiled header), so a loop here runs
// as the library's do: on every thread it is given.
TEST(ParallelLoops, RunOnEveryThread) {
  const int threads = at::get_num_threads();
  at::set_num_threads(2);
  std::vector<int> ran(2, -1);
  at::parallel_for(0, 2, 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) ran[i] = at::get_thread_num();
  });
  at::set_num_threads(threads);
  EXPECT_NE(ran[0], ran[1]) << "both halves of the loop ran on thread " << ran[0];
}
