// SPDX-License-Identifier: Apache-2.0
//
// An invariant a fuzz target checks beyond "no crash": when it does not hold,
// the target aborts, which libFuzzer reports as a crash and saves the input.
#ifndef STOCKADE_FUZZ_FUZZ_CHECK_H_
#define STOCKADE_FUZZ_FUZZ_CHECK_H_

#include <cstdio>
#include <cstdlib>
#include <string>

#define FUZZ_CHECK(condition, detail)                                                           \
  do {                                                                                          \
    if (!(condition)) {                                                                         \
      std::fprintf(stderr, "%s:%d: FUZZ_CHECK(%s) failed: %s\n", __FILE__, __LINE__, #condition, \
                   std::string(detail).c_str());                                                \
      std::abort();                                                                             \
    }                                                                                           \
  } while (0)

#endif  // STOCKADE_FUZZ_FUZZ_CHECK_H_
