// The shardload commands. Each takes the arguments after its name and
// returns the process exit code.
#pragma once

#include "cli.h"

namespace shardload::cli {

struct Command {
  const CommandSpec* spec;
  int (*run)(int argc, char** argv);
};

extern const CommandSpec kInspectSpec;
int RunInspect(int argc, char** argv);
extern const CommandSpec kLoadSpec;
int RunLoad(int argc, char** argv);
extern const CommandSpec kPlanSpec;
int RunPlan(int argc, char** argv);
extern const CommandSpec kSplitSpec;
int RunSplit(int argc, char** argv);
extern const CommandSpec kGenerateSpec;
int RunGenerate(int argc, char** argv);
extern const CommandSpec kVerifySpec;
int RunVerify(int argc, char** argv);

}  // namespace shardload::cli
