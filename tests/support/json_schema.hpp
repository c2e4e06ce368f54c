// A small JSON Schema validator for the subset docs/trace.schema.json uses (draft 2020-12
// keywords): type, enum, const, minimum, exclusiveMinimum, minLength, required, properties,
// additionalProperties, items, minItems, allOf, anyOf, oneOf, not, if/then/else, and $ref to
// "#/$defs/<name>" (or "#/definitions/<name>"). An unknown keyword is an error, so a schema
// cannot silently use more than this checks.
#pragma once

#include <cmath>
#include <nlohmann/json.hpp>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

namespace loop_test {

class JsonSchema {
 public:
  explicit JsonSchema(nlohmann::json schema) : root_(std::move(schema)) { check_keywords(root_); }

  /// The reasons `doc` breaks the schema (empty when it is valid), each with its JSON path.
  std::vector<std::string> errors(const nlohmann::json& doc) const {
    std::vector<std::string> out;
    validate(root_, doc, "$", out);
    return out;
  }
  bool valid(const nlohmann::json& doc) const { return errors(doc).empty(); }

 private:
  static bool has_type(const nlohmann::json& v, const std::string& t) {
    if (t == "object") return v.is_object();
    if (t == "array") return v.is_array();
    if (t == "string") return v.is_string();
    if (t == "integer")
      return v.is_number_integer() || (v.is_number_float() && v == std::floor(v.get<double>()));
    if (t == "number") return v.is_number();
    if (t == "boolean") return v.is_boolean();
    if (t == "null") return v.is_null();
    throw std::invalid_argument("unknown JSON Schema type: " + t);
  }

  void check_keywords(const nlohmann::json& s) const {
    static const std::set<std::string> known = {"$schema",
                                                "$id",
                                                "$defs",
                                                "definitions",
                                                "title",
                                                "description",
                                                "examples",
                                                "$comment",
                                                "type",
                                                "enum",
                                                "const",
                                                "minimum",
                                                "exclusiveMinimum",
                                                "minLength",
                                                "required",
                                                "properties",
                                                "additionalProperties",
                                                "items",
                                                "minItems",
                                                "allOf",
                                                "anyOf",
                                                "oneOf",
                                                "not",
                                                "if",
                                                "then",
                                                "else",
                                                "$ref"};
    if (s.is_boolean()) return;
    if (!s.is_object()) throw std::invalid_argument("a schema must be an object or a boolean");
    for (auto& [k, v] : s.items()) {
      if (!known.count(k)) throw std::invalid_argument("unsupported JSON Schema keyword: " + k);
      if (k == "properties" || k == "$defs" || k == "definitions")
        for (auto& [name, sub] : v.items()) check_keywords(sub);
      if (k == "items" || k == "not" || k == "if" || k == "then" || k == "else" ||
          (k == "additionalProperties" && v.is_object()))
        check_keywords(v);
      if (k == "allOf" || k == "anyOf" || k == "oneOf")
        for (auto& sub : v) check_keywords(sub);
    }
  }

  const nlohmann::json& resolve(const std::string& ref) const {
    for (const char* prefix : {"#/$defs/", "#/definitions/"}) {
      std::string p(prefix);
      if (ref.rfind(p, 0) == 0) {
        const auto& defs = root_.at(p.substr(2, p.size() - 3));
        return defs.at(ref.substr(p.size()));
      }
    }
    throw std::invalid_argument("unsupported $ref: " + ref);
  }

  void validate(const nlohmann::json& s, const nlohmann::json& v, const std::string& path,
                std::vector<std::string>& out) const {
    if (s.is_boolean()) {
      if (!s.get<bool>()) out.push_back(path + ": no value is allowed here");
      return;
    }
    auto fail = [&](const std::string& why) { out.push_back(path + ": " + why); };
    if (s.contains("$ref")) validate(resolve(s["$ref"]), v, path, out);
    if (s.contains("type")) {
      bool ok = false;
      if (s["type"].is_array()) {
        for (auto& t : s["type"]) ok = ok || has_type(v, t);
      } else {
        ok = has_type(v, s["type"]);
      }
      if (!ok) fail("expected type " + s["type"].dump() + ", got " + v.dump());
    }
    if (s.contains("enum")) {
      bool ok = false;
      for (auto& e : s["enum"]) ok = ok || e == v;
      if (!ok) fail(v.dump() + " is not one of " + s["enum"].dump());
    }
    if (s.contains("const") && s["const"] != v) fail("expected " + s["const"].dump());
    if (v.is_number()) {
      if (s.contains("minimum") && v.get<double>() < s["minimum"].get<double>())
        fail(v.dump() + " < minimum " + s["minimum"].dump());
      if (s.contains("exclusiveMinimum") && v.get<double>() <= s["exclusiveMinimum"].get<double>())
        fail(v.dump() + " <= exclusiveMinimum " + s["exclusiveMinimum"].dump());
    }
    if (v.is_string() && s.contains("minLength") &&
        v.get<std::string>().size() < s["minLength"].get<std::size_t>())
      fail("string shorter than " + s["minLength"].dump());
    if (v.is_object()) {
      if (s.contains("required"))
        for (auto& r : s["required"])
          if (!v.contains(r.get<std::string>())) fail("missing required property " + r.dump());
      for (auto& [k, sub] : v.items()) {
        if (s.contains("properties") && s["properties"].contains(k)) {
          validate(s["properties"][k], sub, path + "." + k, out);
        } else if (s.contains("additionalProperties")) {
          validate(s["additionalProperties"], sub, path + "." + k, out);
        }
      }
    }
    if (v.is_array()) {
      if (s.contains("minItems") && v.size() < s["minItems"].get<std::size_t>())
        fail("fewer than " + s["minItems"].dump() + " items");
      if (s.contains("items"))
        for (std::size_t i = 0; i < v.size(); ++i)
          validate(s["items"], v[i], path + "[" + std::to_string(i) + "]", out);
    }
    auto count_valid = [&](const nlohmann::json& list) {
      int n = 0;
      for (auto& sub : list) {
        std::vector<std::string> e;
        validate(sub, v, path, e);
        if (e.empty()) ++n;
      }
      return n;
    };
    if (s.contains("allOf"))
      for (auto& sub : s["allOf"]) validate(sub, v, path, out);
    if (s.contains("anyOf") && count_valid(s["anyOf"]) == 0) fail("matches none of anyOf");
    if (s.contains("oneOf")) {
      int n = count_valid(s["oneOf"]);
      if (n != 1) fail("matches " + std::to_string(n) + " of oneOf (exactly one expected)");
    }
    if (s.contains("not")) {
      std::vector<std::string> e;
      validate(s["not"], v, path, e);
      if (e.empty()) fail("matches the schema under not");
    }
    if (s.contains("if")) {
      std::vector<std::string> e;
      validate(s["if"], v, path, e);
      if (e.empty() && s.contains("then")) validate(s["then"], v, path, out);
      if (!e.empty() && s.contains("else")) validate(s["else"], v, path, out);
    }
  }

  nlohmann::json root_;
};

}  // namespace loop_test
