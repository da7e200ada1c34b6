-- The scripts' own JSON decoder and encoder (REAPER's Lua has no JSON library).

T.test("json_decodes_literals_numbers_and_strings", function()
  local json = T.lib().json
  T.eq(json.decode("true"), true)
  T.eq(json.decode(" false "), false)
  T.eq(json.decode("null"), json.null, "null is a sentinel, not nil")
  T.eq(json.decode("0"), 0)
  T.eq(json.decode("-12"), -12)
  T.eq(json.decode("3.25"), 3.25)
  T.eq(json.decode("-0.5e2"), -50.0)
  T.eq(json.decode("1E-3"), 0.001)
  T.eq(json.decode("2.5e+1"), 25.0)
  T.eq(json.decode('""'), "")
  T.eq(json.decode('"plain text"'), "plain text")
  T.eq(json.decode('\t\r\n "spaced" \n'), "spaced")
end)

T.test("json_decodes_escapes_and_unicode", function()
  local json = T.lib().json
  T.eq(json.decode([["a\"b\\c\/d"]]), 'a"b\\c/d')
  T.eq(json.decode([["\b\f\n\r\t"]]), "\b\f\n\r\t")
  T.eq(json.decode([["caf\u00e9"]]), "caf\u{e9}", "\\u00e9 becomes UTF-8")
  T.eq(json.decode([["\u20AC"]]), "\u{20ac}", "upper-case hex digits")
  T.eq(json.decode([["\ud83c\udfb8 guitar"]]), "\u{1f3b8} guitar", "a surrogate pair is one character")
  T.eq(json.decode([["/Samples/\u00dcber Bass/fingered 01.wav"]]), "/Samples/\u{dc}ber Bass/fingered 01.wav")
  -- Python writes a non-UTF-8 byte of a file name as a lone surrogate U+DC80..U+DCFF: the byte again.
  T.eq(json.decode([["caf\udce9.wav"]]), "caf\xe9.wav")
  T.eq(json.decode([["\ud800x"]]), "\u{fffd}x", "any other lone surrogate is U+FFFD")
  T.eq(json.decode([["\u0000"]]), "\0")
end)

T.test("json_decodes_nested_arrays_and_objects", function()
  local json = T.lib().json
  local value = json.decode([==[
    {"matches": [{"rank": 1, "path": "/a b/c.wav", "loop": false, "label": null, "tags": []},
                 {"rank": 2, "nested": {"deep": [1, [2, [3, {}]]]}}],
     "timings_ms": {"total": 19.2}, "empty": {}}
  ]==])
  T.eq(#value.matches, 2)
  T.eq(value.matches[1].path, "/a b/c.wav")
  T.eq(value.matches[1].loop, false)
  T.eq(value.matches[1].label, json.null)
  T.eq(value.matches[1].tags, {})
  T.eq(value.matches[2].nested.deep[2][2][2], {})
  T.eq(value.timings_ms.total, 19.2)
  local array = json.decode("[null, 1, null]")
  T.eq(#array, 3, "nulls in an array leave no holes")
end)

T.test("json_rejects_malformed_input", function()
  local json = T.lib().json
  local bad = {
    "", "   ", "{", "[", "[1,]", "[1 2]", "{,}", '{"a" 1}', '{"a":1,}', "{a:1}", "{'a':1}", '{"a":1 "b":2}',
    '"unterminated', '"bad \\x escape"', '"\\u12"', '"\\uZZZZ"', '"raw\ncontrol"', '"tab\there"',
    "01", "-", "+1", ".5", "1.", "1e", "1e+", "0x10", "NaN", "Infinity", "-Infinity",
    "tru", "nul", "True", "[1] [2]", '{"a":1}x', "[1]]", string.rep("[", 300) .. string.rep("]", 300),
  }
  for _, text in ipairs(bad) do
    T.raises(function() json.decode(text) end, "invalid JSON", string.format("decode(%q)", text))
  end
  T.raises(function() json.decode(nil) end, "invalid JSON")
end)

T.test("json_encodes_what_it_decodes", function()
  local json = T.lib().json
  local value = {
    instrument = 'nylon "gut" guitar\\', matches = { { rank = 1, score = 0.81234567891234, offset_s = 2.37,
    loop = false, path = "/Samples/caf\u{e9}\n01.wav", label = json.null } }, index = 1,
    window_start = 12.345678901234567, empty = {}, third = 1 / 3,
  }
  local text = json.encode(value)
  T.eq(json.decode(text), value, "decode(encode(x)) == x")
  T.eq(json.encode(json.decode(text)), text, "the encoding is stable (sorted keys)")
  T.eq(json.encode({ 1, 2.5, "x" }), '[1,2.5,"x"]')
  T.eq(json.encode({ b = 1, a = true }), '{"a":true,"b":1}')
  T.eq(json.encode("\1\31\127"), '"\\u0001\\u001f\\u007f"')
  T.raises(function() json.encode(0 / 0) end, "cannot encode")
  T.raises(function() json.encode({ [true] = 1 }) end, "cannot encode")
end)

-- A reply of the real `stemserver query --server ... --json`, captured by the Python test from a
-- running server: decoded here, written back as JSON for the Python test to compare with its own
-- reading of the same bytes.
T.test("json_decodes_real_reply", function()
  local lib = T.lib()
  local text = T.read(T.env("STEMSERVER_TEST_REPLY"))
  local reply = lib.json.decode(text)
  T.ok(#reply.matches > 0, "the captured reply has matches")
  for i, match in ipairs(reply.matches) do
    T.eq(match.rank, i, "rank")
    T.eq(type(match.path), "string", "path")
    for _, key in ipairs({ "score", "offset_s", "offset_at_end_s", "alignment_score", "duration_s" }) do
      T.eq(type(match[key]), "number", key)
    end
    T.eq(type(match.loop), "boolean", "loop")
  end
  T.eq(lib.decode_reply(text), reply, "decode_reply reads the same")
  T.write(T.env("STEMSERVER_TEST_DECODED"), lib.json.encode(reply))
end)
