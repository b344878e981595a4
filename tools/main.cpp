// shardload: command-line entry point; dispatches to the commands.
#include <cstdio>
#include <cstring>
#include <exception>
#include <new>
#include <string>

#include "commands.h"
#include "mpi_launch.h"

namespace shardload::cli {
namespace {

const Command kCommands[] = {
    {&kInspectSpec, RunInspect},
    {&kLoadSpec, RunLoad},
    {&kPlanSpec, RunPlan},
    {&kSplitSpec, RunSplit},
    {&kGenerateSpec, RunGenerate},
    {&kVerifySpec, RunVerify},
};

// `shardload --version`: the version, and the optional parts this build has.
void PrintVersion() {
  std::string mpi = MpiLibraryVersion();
  std::printf("shardload %s\nmpi: %s\n", SHARDLOAD_VERSION,
              mpi.empty() ? "none (built without MPI: `load --mpi` unavailable)" : mpi.c_str());
}

void PrintUsage(std::FILE* out) {
  std::fputs("usage: shardload COMMAND [ARGS] (shardload COMMAND --help for details)\n"
             "       shardload --version\n\ncommands:\n", out);
  for (const Command& c : kCommands) {
    std::fprintf(out, "  %-10s %s\n", c.spec->name.c_str(), c.spec->summary.c_str());
  }
}

int Dispatch(int argc, char** argv) {
  if (argc < 2) {
    PrintUsage(stderr);
    return kExitUsage;
  }
  std::string name = argv[1];
  if (name == "--help" || name == "-h" || name == "help") {
    PrintUsage(stdout);
    return kExitOk;
  }
  if (name == "--version") {
    PrintVersion();
    return kExitOk;
  }
  for (const Command& c : kCommands) {
    if (c.spec->name == name) return c.run(argc - 2, argv + 2);
  }
  std::fprintf(stderr, "shardload: unknown command '%s'\n", name.c_str());
  PrintUsage(stderr);
  return kExitUsage;
}

}  // namespace
}  // namespace shardload::cli

int main(int argc, char** argv) {
  try {
    return shardload::cli::Dispatch(argc, argv);
  } catch (const std::bad_alloc&) {
    std::fputs("shardload: error: out of memory\n", stderr);
    return shardload::cli::kExitUnsupported;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "shardload: internal error: %s\n", e.what());
    return shardload::cli::kExitInternal;
  }
}
