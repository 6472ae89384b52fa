// SPDX-License-Identifier: Apache-2.0
//
// The fenced code blocks of a Markdown page, so that tests can hold the
// docs' examples to what the code reads.
#ifndef STOCKADE_TESTS_SUPPORT_DOC_BLOCKS_H_
#define STOCKADE_TESTS_SUPPORT_DOC_BLOCKS_H_

#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

namespace stockade {

// The text of every ```<language> block of the file at `path`; empty if it cannot be read.
inline std::vector<std::string> FencedBlocks(const std::string& path, const std::string& language) {
  std::ifstream file(path);
  std::stringstream content;
  content << file.rdbuf();
  const std::string doc = content.str();
  const std::regex block("```" + language + "\n([\\s\\S]*?)```");
  std::vector<std::string> out;
  for (auto it = std::sregex_iterator(doc.begin(), doc.end(), block); it != std::sregex_iterator(); ++it)
    out.push_back((*it)[1].str());
  return out;
}

}  // namespace stockade

#endif  // STOCKADE_TESTS_SUPPORT_DOC_BLOCKS_H_
