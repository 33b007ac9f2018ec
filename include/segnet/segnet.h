#pragma once
// The whole public API of the segnet library.
#include <segnet/bench.h>
#include <segnet/checkpoint.h>
#include <segnet/choices.h>
#include <segnet/convert.h>
#include <segnet/data.h>
#include <segnet/error.h>
#include <segnet/evaluate.h>
#include <segnet/files.h>
#include <segnet/image.h>
#include <segnet/metrics.h>
#include <segnet/model.h>
#include <segnet/predict.h>
#include <segnet/runtime.h>
#include <segnet/segmenter.h>
#include <segnet/train.h>
#include <segnet/version.h>
