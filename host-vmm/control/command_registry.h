// The control protocol's command table: tools register named commands, the server (or a test)
// hands it request lines and gets reply lines. It knows no tool.
//
// Protocol: one JSON object per line each way.
//   request  {"cmd":"<name>", ...arguments}
//   reply    {"ok":true, ...result fields}  or  {"ok":false,"error":"<one line>"}
// Built in: {"cmd":"help"} -> {"ok":true,"commands":[{"name":..,"help":..},...]}
//           {"cmd":"stats"} -> {"ok":true,"stats":{"<section>":{...},...}} from add_stats().
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "gears/expected.h"

namespace gears::vmm::control {

using Json = nlohmann::json;

// A handler gets the whole request object and returns the result fields (an object; any other
// value is sent as {"result": value}) or an error. Handlers run on the server thread: a tool
// that shares state with vCPU threads locks it itself. Exceptions from nlohmann's accessors
// (a wrong argument type) are caught and become error replies.
using Handler = std::function<Expected<Json>(const Json& request)>;

class CommandRegistry {
 public:
  CommandRegistry();

  // Fails if the name is taken (two tools must not silently shadow each other).
  Expected<void> add(std::string name, std::string help, Handler handler);
  void remove(const std::string& name);
  // A section of the built-in "stats" reply (each tool adds its counters; called per request).
  Expected<void> add_stats(std::string section, std::function<Json()> provider);
  std::vector<std::pair<std::string, std::string>> list() const;  // (name, help), sorted

  // One request line in, one reply line out (no trailing newline). Never throws.
  std::string handle_line(std::string_view line) const;
  Json handle(const Json& request) const;

  static Json error_reply(std::string_view message);
  // Serialises a reply on one line; invalid UTF-8 from guest strings is replaced, not fatal.
  static std::string to_line(const Json& reply);

 private:
  struct Entry {
    std::string help;
    std::shared_ptr<const Handler> handler;
  };
  mutable std::mutex mu_;
  std::map<std::string, Entry, std::less<>> commands_;
  std::map<std::string, std::shared_ptr<const std::function<Json()>>> stats_;
};

}  // namespace gears::vmm::control
