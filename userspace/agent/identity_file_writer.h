// SPDX-License-Identifier: Apache-2.0
//
// The identity table's file, saved off the agent's lock.
#ifndef STOCKADE_USERSPACE_AGENT_IDENTITY_FILE_WRITER_H_
#define STOCKADE_USERSPACE_AGENT_IDENTITY_FILE_WRITER_H_

#include <condition_variable>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "stockade/identity/identity_allocator.h"

namespace stockade {

// The identity table's file, written on a thread of its own: at 100k CIDR
// identities its JSON and the write took ~100 ms, and under the agent's lock
// a policy change made just then waited for them. Saves that come faster
// than the disk are folded into the newest.
class IdentityFileWriter {
 public:
  explicit IdentityFileWriter(std::string path) : path_(std::move(path)), thread_([this] { Loop(); }) {}
  // Writes what waits, then ends: a stopped agent leaves its newest table.
  ~IdentityFileWriter() {
    {
      std::lock_guard<std::mutex> hold(mu_);
      stopping_ = true;
    }
    wake_.notify_one();
    thread_.join();
  }
  IdentityFileWriter(const IdentityFileWriter&) = delete;
  IdentityFileWriter& operator=(const IdentityFileWriter&) = delete;

  void Save(IdentityTable table) {
    {
      std::lock_guard<std::mutex> hold(mu_);
      waiting_ = std::move(table);
    }
    wake_.notify_one();
  }

 private:
  void Loop() {
    std::unique_lock<std::mutex> hold(mu_);
    while (true) {
      wake_.wait(hold, [this] { return waiting_ || stopping_; });
      if (!waiting_) return;
      IdentityTable table = std::move(*waiting_);
      waiting_.reset();
      hold.unlock();
      if (absl::Status s = Write(table); !s.ok()) LogNotSaved(s);
      hold.lock();
    }
  }

  absl::Status Write(const IdentityTable& table) const;
  static void LogNotSaved(const absl::Status& s);

  const std::string path_;
  std::mutex mu_;
  std::condition_variable wake_;
  std::optional<IdentityTable> waiting_;
  bool stopping_ = false;
  std::thread thread_;  // last: it starts with everything above in place
};

}  // namespace stockade

#endif  // STOCKADE_USERSPACE_AGENT_IDENTITY_FILE_WRITER_H_
