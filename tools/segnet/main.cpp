// segnet: train, evaluate and apply SegNet from the command line. Each subcommand lives in its own
// file; this one picks the subcommand and prints errors as one line.
#include "cli.h"

#include <segnet/error.h>
#include <segnet/version.h>

#include <c10/util/Exception.h>
#include <opencv2/core/utils/logger.hpp>

#include <cstdio>
#include <cstdlib>
#include <vector>

using namespace segnet;

int main(int argc, char** argv) {
  // Errors reach the user as one line each; OpenCV's video backends (and FFmpeg below them) would
  // otherwise add their own warnings for every file or camera they fail to open.
  cv::utils::logging::setLogLevel(cv::utils::logging::LOG_LEVEL_SILENT);
  setenv("OPENCV_FFMPEG_LOGLEVEL", "-8", /*overwrite=*/0);  // AV_LOG_QUIET, unless the user asks for more
  cli::set_command_line(argc, argv);
  CLI::App app{"SegNet semantic segmentation: train, evaluate, segment images and videos."};
  app.set_version_flag("--version", std::string("segnet ") + version() + " (commit " + git_commit() + ")");
  app.require_subcommand(1);
  const std::vector<cli::Command> commands = {cli::add_train(app),        cli::add_eval(app),  cli::add_predict(app),
                                              cli::add_pseudo_label(app), cli::add_bench(app), cli::add_synth(app),
                                              cli::add_export(app),       cli::add_convert(app),
                                              cli::add_report(app),       cli::add_tune(app),
                                              cli::add_calibrate(app),    cli::add_adapt(app),
                                              cli::add_info(app)};
  try {
    app.parse(argc, argv);  // option callbacks may throw segnet's errors too
    for (const auto& command : commands)
      if (command.app->parsed()) {
        cli::refuse_empty_values(*command.app);
        command.run();
      }
  } catch (const CLI::Success& e) {  // --help
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "segnet: error: %s (see --help)\n", e.what());
    return e.get_exit_code();
  } catch (const OptionError& e) {
    std::fprintf(stderr, "segnet: error: %s: %s\n", cli::flag_for(e.option()).c_str(), e.problem().c_str());
    return 1;
  } catch (const c10::Error& e) {
    std::fprintf(stderr, "segnet: error: %s\n", e.what_without_backtrace());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "segnet: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
