#pragma once
// Which segnet this is: the release, and the git commit the library was built from.

namespace segnet {

const char* version();     // "0.2.0"
const char* git_commit();  // short hash, "unknown" outside a git checkout

}  // namespace segnet
