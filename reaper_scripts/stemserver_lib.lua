-- @noindex
-- @description stemserver: code shared by the stemserver scripts
-- @author stemserver
-- @version 0.2.0
--
-- stemserver_lib.lua: the code shared by the stemserver ReaScripts. Each script loads this file
-- with dofile (from its own folder) and calls one entry point: find_stem, step_result or
-- edit_settings.
--
-- The pure parts (JSON, command-line quoting, where a stem goes) come first and do not touch
-- REAPER; the REAPER-facing parts follow. The tests (tests/run_tests.lua) run all of it with a
-- mock `reaper` table, and the end-to-end test with the real `stemserver` client and server.
--
-- Written for Lua 5.3 and 5.4 (REAPER 6 embeds 5.3, REAPER 7 embeds 5.4).

local M = {}

M.VERSION = "0.2.0"
M.SECTION = "stemserver"  -- ExtState section of the settings, and project ExtState section of the last query
M.STATE_KEY = "last_query"
M.TITLE = "stemserver"

-- The server answers for the LAST 8 s of the audio it gets (docs/protocol.md: the query window,
-- the default "seconds"). So we render exactly that window, the last 8 s of the time selection,
-- and the offsets it returns refer to the start of what we rendered.
M.QUERY_SECONDS = 8
M.MIN_SECONDS = 2  -- the server refuses less than 2 s of audio

-- "File: Render project, using the most recent render settings, auto-close render dialog".
M.RENDER_ACTION = 42230

M.DEFAULTS = {
  server = "osc://127.0.0.1:9000",
  k = 10,
  instrument = "bass",
  executable = "stemserver",
  timeout = 20,  -- seconds the client waits for the server (a stopped OSC server is only noticed by this)
  key = "",  -- the mix's key, when the user knows it better than the server's estimate; "" lets the server estimate it
  transpose = true,  -- shift each stem's pitch into the mix's key (the result's transpose)
}

-- The tempos the server accepts for the mix (docs/protocol.md); outside them it estimates the tempo itself.
M.MIN_TEMPO, M.MAX_TEMPO = 20, 400

------------------------------------------------------------------------------------------------
-- JSON
------------------------------------------------------------------------------------------------

local json = {}
M.json = json

-- JSON null decodes to this sentinel (a Lua nil would silently drop keys and punch holes in arrays).
json.null = setmetatable({}, { __tostring = function() return "null" end })

local MAX_DEPTH = 200

local function json_error(pos, what)
  error(string.format("invalid JSON at character %d: %s", pos, what), 0)
end

local function skip_space(s, pos)
  return s:find("[^ \t\r\n]", pos) or #s + 1
end

local simple_escapes = {
  ['"'] = '"', ["\\"] = "\\", ["/"] = "/", b = "\b", f = "\f", n = "\n", r = "\r", t = "\t",
}

local function hex4(s, at)  -- the code unit of the \uXXXX escape whose backslash is at `at`
  local digits = s:sub(at + 2, at + 5)
  if not digits:match("^%x%x%x%x$") then json_error(at, "\\u needs four hex digits") end
  return tonumber(digits, 16)
end

local function decode_unicode_escape(s, at)
  local code = hex4(s, at)
  local after = at + 6
  if code >= 0xD800 and code <= 0xDBFF and s:sub(after, after + 1) == "\\u" then
    local low = hex4(s, after)
    if low >= 0xDC00 and low <= 0xDFFF then  -- a surrogate pair: one character outside the BMP
      return utf8.char(0x10000 + (code - 0xD800) * 0x400 + (low - 0xDC00)), after + 6
    end
  end
  if code >= 0xDC80 and code <= 0xDCFF then
    -- A lone low surrogate in this range is how Python's json writes a byte of a file name that is
    -- not UTF-8 (surrogateescape): turning it back into that byte gives the real path.
    return string.char(code - 0xDC00), after
  end
  if code >= 0xD800 and code <= 0xDFFF then return "\239\191\189", after end  -- U+FFFD
  return utf8.char(code), after
end

local function decode_string(s, pos)  -- pos: the opening quote
  local parts, i = {}, pos + 1
  while true do
    local j = s:find('[\0-\31"\\]', i)
    if not j then json_error(pos, "unterminated string") end
    parts[#parts + 1] = s:sub(i, j - 1)
    local c = s:sub(j, j)
    if c == '"' then return table.concat(parts), j + 1 end
    if c ~= "\\" then json_error(j, "control character in a string") end
    local e = s:sub(j + 1, j + 1)
    if e == "u" then
      parts[#parts + 1], i = decode_unicode_escape(s, j)
    elseif simple_escapes[e] then
      parts[#parts + 1], i = simple_escapes[e], j + 2
    else
      json_error(j, "unknown escape \\" .. e)
    end
  end
end

local function decode_number(s, pos)
  -- JSON's grammar exactly: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
  local i = pos
  if s:sub(i, i) == "-" then i = i + 1 end
  local int = s:match("^0", i) or s:match("^[1-9]%d*", i)
  if not int then json_error(pos, "bad number") end
  i = i + #int
  if s:sub(i, i) == "." then
    local frac = s:match("^%.%d+", i)
    if not frac then json_error(i, "digits must follow the decimal point") end
    i = i + #frac
  end
  if s:sub(i, i) == "e" or s:sub(i, i) == "E" then
    local exp = s:match("^[eE][+-]?%d+", i)
    if not exp then json_error(i, "bad exponent") end
    i = i + #exp
  end
  return tonumber(s:sub(pos, i - 1)), i
end

local decode_value

local function decode_array(s, pos, depth)
  local array, n = {}, 0
  pos = skip_space(s, pos + 1)
  if s:sub(pos, pos) == "]" then return array, pos + 1 end
  while true do
    n = n + 1
    array[n], pos = decode_value(s, pos, depth + 1)
    pos = skip_space(s, pos)
    local c = s:sub(pos, pos)
    if c == "]" then return array, pos + 1 end
    if c ~= "," then json_error(pos, "expected ',' or ']' in an array") end
    pos = pos + 1
  end
end

local function decode_object(s, pos, depth)
  local object = {}
  pos = skip_space(s, pos + 1)
  if s:sub(pos, pos) == "}" then return object, pos + 1 end
  while true do
    if s:sub(pos, pos) ~= '"' then json_error(pos, "expected a string key") end
    local key
    key, pos = decode_string(s, pos)
    pos = skip_space(s, pos)
    if s:sub(pos, pos) ~= ":" then json_error(pos, "expected ':' after a key") end
    object[key], pos = decode_value(s, pos + 1, depth + 1)
    pos = skip_space(s, pos)
    local c = s:sub(pos, pos)
    if c == "}" then return object, pos + 1 end
    if c ~= "," then json_error(pos, "expected ',' or '}' in an object") end
    pos = skip_space(s, pos + 1)
  end
end

local literals = { ["true"] = true, ["false"] = false, null = json.null }

decode_value = function(s, pos, depth)
  if depth > MAX_DEPTH then json_error(pos, "nested too deeply") end
  pos = skip_space(s, pos)
  local c = s:sub(pos, pos)
  if c == "{" then return decode_object(s, pos, depth) end
  if c == "[" then return decode_array(s, pos, depth) end
  if c == '"' then return decode_string(s, pos) end
  if c == "-" or c:match("^%d$") then return decode_number(s, pos) end
  for word, value in pairs(literals) do
    if s:sub(pos, pos + #word - 1) == word then return value, pos + #word end
  end
  if c == "" then json_error(pos, "unexpected end of input") end
  json_error(pos, "unexpected character '" .. c .. "'")
end

-- Decodes one JSON value starting at `pos` (default 1); returns it and the position after it.
function json.decode_at(s, pos)
  return decode_value(s, pos or 1, 0)
end

-- Decodes a whole JSON text; anything but white space after the value is an error.
function json.decode(s)
  if type(s) ~= "string" then error("invalid JSON: expected a string, got " .. type(s), 0) end
  local value, pos = decode_value(s, 1, 0)
  pos = skip_space(s, pos)
  if pos <= #s then json_error(pos, "trailing characters after the value") end
  return value
end

local string_escapes = { ['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b", ["\f"] = "\\f", ["\n"] = "\\n",
                         ["\r"] = "\\r", ["\t"] = "\\t" }

local function encode_string(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    return string_escapes[c] or string.format("\\u%04x", c:byte())
  end) .. '"'
end

local function encode_number(x)
  if x ~= x or x == math.huge or x == -math.huge then error("cannot encode " .. tostring(x) .. " as JSON", 0) end
  if math.type(x) == "integer" then return string.format("%d", x) end
  local text = string.format("%.15g", x)  -- the shortest usual form, unless it does not read back exactly
  if tonumber(text) ~= x then text = string.format("%.17g", x) end
  return (text:gsub(",", "."))  -- in case the C locale of the host uses a decimal comma
end

local function array_length(t)  -- the length if t is a sequence 1..n (empty counts as an array), else nil
  local count, max = 0, 0
  for key in pairs(t) do
    if math.type(key) ~= "integer" or key < 1 then return nil end
    count, max = count + 1, math.max(max, key)
  end
  return count == max and max or nil
end

local function encode_value(value, out)
  local kind = type(value)
  if value == json.null or value == nil then
    out[#out + 1] = "null"
  elseif kind == "boolean" then
    out[#out + 1] = tostring(value)
  elseif kind == "number" then
    out[#out + 1] = encode_number(value)
  elseif kind == "string" then
    out[#out + 1] = encode_string(value)
  elseif kind == "table" then
    local n = array_length(value)
    if n then
      out[#out + 1] = "["
      for i = 1, n do
        if i > 1 then out[#out + 1] = "," end
        encode_value(value[i], out)
      end
      out[#out + 1] = "]"
    else
      local keys = {}
      for key in pairs(value) do
        if type(key) ~= "string" then error("cannot encode a table with a " .. type(key) .. " key as JSON", 0) end
        keys[#keys + 1] = key
      end
      table.sort(keys)  -- a stable text for the same table
      out[#out + 1] = "{"
      for i, key in ipairs(keys) do
        if i > 1 then out[#out + 1] = "," end
        out[#out + 1] = encode_string(key)
        out[#out + 1] = ":"
        encode_value(value[key], out)
      end
      out[#out + 1] = "}"
    end
  else
    error("cannot encode a " .. kind .. " as JSON", 0)
  end
end

function json.encode(value)
  local out = {}
  encode_value(value, out)
  return table.concat(out)
end

------------------------------------------------------------------------------------------------
-- Small helpers
------------------------------------------------------------------------------------------------

local function trim(s)
  return (s:gsub("^%s+", ""):gsub("%s+$", ""))
end
M.trim = trim

local function split(s, separator)  -- plain (not a pattern) separator; keeps empty fields
  local fields, start = {}, 1
  while true do
    local at = s:find(separator, start, true)
    if not at then
      fields[#fields + 1] = s:sub(start)
      return fields
    end
    fields[#fields + 1] = s:sub(start, at - 1)
    start = at + #separator
  end
end
M.split = split

function M.basename(path)
  return path:match("([^/\\]+)$") or path
end

function M.format_number(x)  -- "8" rather than "8.0", for command lines and settings
  if x == math.floor(x) and math.abs(x) < 2^53 then return string.format("%d", math.floor(x)) end
  return (string.format("%.10g", x):gsub(",", "."))
end

function M.is_windows()
  if reaper and reaper.GetOS then return reaper.GetOS():match("^Win") ~= nil end
  return package.config:sub(1, 1) == "\\"
end

local function separator()
  return M.is_windows() and "\\" or "/"
end

local counter = 0
local function unique_name(prefix)  -- file names no other run of the scripts uses at the same time
  counter = counter + 1
  local clock = reaper and reaper.time_precise and reaper.time_precise() or os.clock()
  return string.format("%s-%d-%d-%d", prefix, os.time(), math.floor((clock % 1) * 1e6), counter)
end

------------------------------------------------------------------------------------------------
-- Command lines
------------------------------------------------------------------------------------------------
--
-- REAPER documents ExecProcess only as "executes command line". On macOS and Linux it is known to
-- split the line itself at spaces (honouring '...', "..." and `...`, with no escapes) and to start
-- the program without a shell, so shell quoting and "2>&1" in the line itself would reach the
-- program as literal text. So the real command line, quoted for a real shell and with stderr
-- redirected to stdout, goes into a small temporary script, and ExecProcess runs
-- `/bin/sh "script.sh"` or `cmd.exe /C "script.cmd"`: a line that means the same thing to REAPER's
-- splitter, to CreateProcess and to a shell, for any characters in the arguments.

-- POSIX sh: inside single quotes nothing is special; a single quote itself becomes '\''.
function M.quote_posix(arg)
  return "'" .. arg:gsub("'", "'\\''") .. "'"
end

-- A cmd.exe batch file: double quotes around every argument (so & | < > ^ ( ) are plain text),
-- and the program's own command-line parsing (CommandLineToArgvW rules) reads it back.
-- Returns nil and a reason for what cannot be passed through cmd.exe safely.
function M.quote_windows(arg)
  if arg:find('"', 1, true) then return nil, "contains a double quote (\")" end
  if arg:find("[\r\n]") then return nil, "contains a line break" end
  -- Backslashes right before the closing quote would escape it: double them.
  local body = arg:gsub("(\\+)$", "%1%1")
  -- In a batch file cmd.exe expands %NAME% even between quotes; %% is a plain %.
  body = body:gsub("%%", "%%%%")
  return '"' .. body .. '"'
end

-- The text of the script that runs argv with stderr joined to stdout.
function M.command_script(argv, windows)
  local quoted = {}
  for i, arg in ipairs(argv) do
    if windows then
      local q, why = M.quote_windows(arg)
      if not q then return nil, string.format("cannot pass %q to the stemserver command: it %s", arg, why) end
      quoted[i] = q
    else
      quoted[i] = M.quote_posix(arg)
    end
  end
  local line = table.concat(quoted, " ") .. " 2>&1"
  if windows then
    return table.concat({
      "@echo off",
      "rem stemserver query, written by the stemserver ReaScripts",
      "chcp 65001 >nul",  -- this file is UTF-8, like the paths REAPER gives us
      "set PYTHONIOENCODING=utf-8",
      line,
      "exit /b %ERRORLEVEL%",
      "",
    }, "\r\n")
  end
  return table.concat({
    "# stemserver query, written by the stemserver ReaScripts",
    -- REAPER started from the Dock or a desktop menu has a short PATH: add where pip, pipx and
    -- Homebrew put commands, so a plain "stemserver" is found there too.
    'PATH="$PATH:$HOME/.local/bin:/usr/local/bin:/opt/homebrew/bin"; export PATH',
    line,
    "",
  }, "\n")
end

-- The line for reaper.ExecProcess that runs the script at `script_path`.
function M.exec_line(script_path, windows)
  if script_path:find('"', 1, true) then return nil, "the temporary folder's path contains a double quote" end
  if windows then return 'cmd.exe /C "' .. script_path .. '"' end
  return '/bin/sh "' .. script_path .. '"'
end

-- The stemserver client's arguments (see `stemserver query --help`). tempo: the project's tempo
-- over the rendered window (BPM), or nil to let the server estimate it.
function M.client_argv(settings, mix_path, instrument, tempo)
  local argv = {
    settings.executable, "query", mix_path,
    "--instrument=" .. instrument,  -- the "=" form, so that a name starting with "-" stays a value
    "-k", M.format_number(settings.k),
    "--server=" .. settings.server,
    "--timeout", M.format_number(settings.timeout),
    "--seconds", M.format_number(M.QUERY_SECONDS),
  }
  if tempo and tempo >= M.MIN_TEMPO and tempo <= M.MAX_TEMPO then
    argv[#argv + 1] = "--tempo"
    argv[#argv + 1] = M.format_number(math.floor(tempo * 1000 + 0.5) / 1000)
  end
  if settings.key and settings.key ~= "" then argv[#argv + 1] = "--key=" .. settings.key end
  argv[#argv + 1] = "--json"
  return argv
end

------------------------------------------------------------------------------------------------
-- Reading the client's answer
------------------------------------------------------------------------------------------------

local function excerpt(text, limit)
  limit = limit or 600
  text = trim(text or "")
  if #text > limit then text = text:sub(1, limit) .. " ..." end
  return text
end

-- ExecProcess returns "exit code\noutput", or nil when it could not start anything.
function M.split_exec_result(raw)
  if raw == nil then return nil, "" end
  local code, output = raw:match("^(%-?%d+)\r?\n(.*)$")
  if not code then code, output = raw:match("^(%-?%d+)%s*$"), "" end
  return tonumber(code), output or raw
end

-- The JSON object in the client's output. Python may print warnings before it (stderr is joined
-- to stdout), so it is the first line that starts with "{", up to the end of that value.
function M.decode_reply(output)
  local start = output:sub(1, 1) == "{" and 1 or output:find("\n{", 1, true)
  if not start then return nil, "no JSON object in the output" end
  if start > 1 then start = start + 1 end
  local ok, value = pcall(json.decode_at, output, start)
  if not ok then return nil, value end
  if type(value) ~= "table" or type(value.matches) ~= "table" then return nil, "the JSON has no \"matches\" list" end
  return value
end

local function server_hint(settings)
  return "Is the server running? Start it in a terminal:\n\n"
    .. "    stemserver serve --checkpoint MODEL.safetensors\n\n"
    .. "and check the server address in \"stemserver: Settings\" (now " .. settings.server .. ")."
end

-- The result table, or nil and a message for the user.
function M.interpret(raw, settings)
  local code, output = M.split_exec_result(raw)
  if code == nil then
    return nil, "REAPER could not run the stemserver command.\n\n" .. excerpt(output)
  end
  if code == 0 then
    local result, why = M.decode_reply(output)
    if result then return result end
    return nil, "stemserver answered something the script cannot read (" .. why .. "):\n\n" .. excerpt(output)
  end
  local errors = {}
  for line in output:gmatch("[^\r\n]+") do
    local text = line:match("^stemserver: error: (.*)")
    if text then errors[#errors + 1] = text end
  end
  if #errors > 0 then
    local text = table.concat(errors, "\n")
    -- The client's codes for "nobody answered" (stemserver/server/client.py).
    if text:find("server error timeout", 1, true) or text:find("server error unreachable", 1, true)
        or text:find("server error refused", 1, true) then
      return nil, "The stemserver server is not answering.\n\n" .. text .. "\n\n" .. server_hint(settings)
    end
    if code == 2 and text:find("unrecognized arguments", 1, true) then
      return nil, "The stemserver command is older than these scripts, which send the project's tempo "
        .. "(--tempo) and the key set in Settings (--key): update stemserver.\n\n" .. text
    end
    return nil, "stemserver reported an error:\n\n" .. text
  end
  -- sh: 127 not found, 126 not executable; cmd.exe: 9009 not recognised.
  if code == 127 or code == 126 or code == 9009 or output:find("is not recognized", 1, true) then
    return nil, "REAPER could not start the stemserver command (\"" .. settings.executable .. "\").\n\n"
      .. "Install stemserver, then give the full path of its executable in \"stemserver: Settings\" "
      .. "(in a terminal, `which stemserver` on macOS and Linux, `where stemserver` on Windows, prints it).\n\n"
      .. excerpt(output)
  end
  if code == 2 then
    return nil, "The stemserver command did not accept its arguments (is it an older version?):\n\n" .. excerpt(output)
  end
  return nil, string.format("The stemserver command failed (exit code %d):\n\n%s", code, excerpt(output))
end

------------------------------------------------------------------------------------------------
-- Where a stem goes
------------------------------------------------------------------------------------------------
--
-- offset_s is the stem position (in the stem's own seconds) that lines up with the start of the
-- query window, and the window starts `lead` seconds after the selection does (when the selection
-- is longer than 8 s). The stem plays at `rate` (the result's stretch: it brings the stem to the
-- project's tempo), so it moves on `rate` of its own seconds per second of the timeline, and at the
-- selection start it is at offset_s - lead * rate. Take offsets and loop lengths stay in the
-- stem's seconds (REAPER's D_STARTOFFS); lengths on the timeline are those divided by the rate.
-- Loops wrap around their length; a one-shot stem that would start before its beginning starts
-- later on the timeline instead.

local function number_or_nil(value)  -- a JSON number, or nil for null and anything else
  if type(value) == "number" and value == value then return value end
  return nil
end

local function text_or_nil(value)
  if type(value) == "string" and value ~= "" then return value end
  return nil
end

-- The take's playback rate for a result: its stretch, or 1 when the server gave none (a one-shot,
-- or a tempo it does not know).
function M.playrate(match)
  local stretch = number_or_nil(match.stretch)
  if stretch and stretch > 0 then return stretch end
  return 1
end

-- The take's pitch shift in semitones: the result's transpose when the setting asks for it.
function M.pitch(match, transpose)
  if not transpose then return 0 end
  return number_or_nil(match.transpose) or 0
end

function M.placement(match, selection_start, selection_end, window_start)
  local rate = M.playrate(match)
  local lead = window_start - selection_start
  local source_at_start = match.offset_s - lead * rate
  local selection_length = selection_end - selection_start
  if match.loop == true then
    return { position = selection_start, offset = source_at_start % match.duration_s,
             length = selection_length, loop = true, rate = rate }
  end
  local position, offset = selection_start, source_at_start
  if source_at_start < 0 then
    position, offset = selection_start - source_at_start / rate, 0
  end
  local length = math.min(selection_end - position, (match.duration_s - offset) / rate)
  return { position = position, offset = offset, length = length, loop = false, rate = rate }
end

local function format_bpm(bpm)  -- "124" or "123.5"
  local text = string.format("%.1f", bpm):gsub(",", ".")
  return (text:gsub("%.0$", ""))
end

-- "100 BPM x1.24": the stem's tempo and the playback rate that brings it to the mix's tempo.
local function tempo_text(match)
  local bpm = number_or_nil(match.tempo_bpm)
  if not bpm then return nil end
  local stretch = number_or_nil(match.stretch)
  if not stretch then return format_bpm(bpm) .. " BPM" end
  return (string.format("%s BPM x%.2f", format_bpm(bpm), stretch):gsub(",", "."))
end

-- "A minor (relative, +3 st)": the stem's key, how it relates to the mix's key, and the semitones
-- that bring it there (left out when with_transpose is false: it was not applied).
local function key_text(match, with_transpose)
  local key = text_or_nil(match.key)
  if not key then return nil end
  local notes = {}
  notes[#notes + 1] = text_or_nil(match.key_relation)
  local transpose = number_or_nil(match.transpose)
  if with_transpose and transpose then notes[#notes + 1] = string.format("%+d st", math.floor(transpose)) end
  if #notes == 0 then return key end
  return key .. " (" .. table.concat(notes, ", ") .. ")"
end

-- What the server says about a result's tempo and key, for the menu and the take name ("" when nothing).
function M.describe(match, with_transpose)
  local parts = {}
  parts[#parts + 1] = tempo_text(match)
  parts[#parts + 1] = key_text(match, with_transpose)
  return table.concat(parts, "    ")
end

-- One menu line per match: rank, file name, score, offset, then tempo and key when known.
function M.menu_entries(matches)
  local entries = {}
  for i, match in ipairs(matches) do
    local text = string.format("%d. %s    score %.2f    offset %s s%s", i, M.basename(match.path), match.score,
                               string.format("%.2f", match.offset_s), match.loop == true and "    (loop)" or "")
    local about = M.describe(match, true)
    if about ~= "" then text = text .. "    " .. about end
    -- "|" separates menu fields; "&" underlines the next letter on Windows; a leading # ! < >
    -- would gray, check or nest the item (the number in front already rules that out).
    entries[i] = text:gsub("|", "/"):gsub("&", "&&")
  end
  return entries
end

-- "fingered 01.wav (1/10)", then what was applied to it: "100 BPM x1.24  A minor (relative, +3 st)".
function M.take_name(match, index, count, transposed)
  local name = string.format("%s (%d/%d)", M.basename(match.path), index, count)
  local about = M.describe(match, transposed)
  if about == "" then return name end
  return name .. "  " .. about:gsub("    ", "  ")
end

------------------------------------------------------------------------------------------------
-- Settings
------------------------------------------------------------------------------------------------

M.SETTING_KEYS = { "server", "k", "instrument", "executable", "timeout", "key", "transpose" }
M.SETTING_CAPTIONS = {
  "Server (osc://HOST:PORT or ws://HOST:PORT)",
  "Stems to list (k)",
  "Default instrument",
  "stemserver executable",
  "Timeout (seconds)",
  "Key of the mix (empty: estimated)",
  "Transpose to the mix's key (yes/no)",
}

local MODES = { [""] = true, m = true, min = true, minor = true, maj = true, major = true }

-- A key as the server reads it: "A minor", "F# major", "Am", "F#m", "Bb". The server has the last
-- word; this only catches a typo before a query is made.
local function is_key(text)
  local mode = text:match("^[A-Ga-g][#b]?%s*(%a*)$")
  return mode ~= nil and MODES[mode:lower()] == true
end

local YES = { yes = true, y = true, on = true, ["true"] = true, ["1"] = true }
local NO = { no = true, n = true, off = true, ["false"] = true, ["0"] = true }

-- The settings as the dialog shows them, in SETTING_KEYS order.
function M.settings_fields(s)
  return { s.server, M.format_number(s.k), s.instrument, s.executable, M.format_number(s.timeout), s.key,
           s.transpose and "yes" or "no" }
end

-- Checks the text fields of the settings dialog; returns settings, or nil and what is wrong.
function M.validate_settings(fields)
  local s = {}
  local server = trim(fields[1] or "")
  local host, port = server:match("^osc://([^/]+):(%d+)$")
  if not host then host, port = server:match("^wss?://([^/]+):(%d+)/?.*$") end
  if not host or tonumber(port) < 1 or tonumber(port) > 65535 then
    return nil, "The server address must look like osc://127.0.0.1:9000 or ws://127.0.0.1:8765, with a port."
  end
  s.server = server
  local k = tonumber(trim(fields[2] or ""))
  if not k or k ~= math.floor(k) or k < 1 or k > 100 then
    return nil, "k, the number of stems to list, must be a whole number from 1 to 100."
  end
  s.k = math.floor(k)
  s.instrument = trim(fields[3] or "")
  if s.instrument == "" then return nil, "The default instrument cannot be empty (for example: bass)." end
  s.executable = trim(fields[4] or "")
  if s.executable == "" then
    return nil, "Give the stemserver executable: \"stemserver\" if REAPER finds it, else its full path."
  end
  local timeout = tonumber(trim(fields[5] or ""))
  if not timeout or timeout < 1 or timeout > 600 then
    return nil, "The timeout must be a number of seconds from 1 to 600."
  end
  s.timeout = timeout
  s.key = trim(fields[6] or "")
  if s.key ~= "" and not is_key(s.key) then
    return nil, "The key of the mix must look like A minor, F# major, Am or Bb; leave it empty to let the server "
      .. "estimate it."
  end
  local transpose = trim(fields[7] or ""):lower()
  if not YES[transpose] and not NO[transpose] then
    return nil, "Transpose to the mix's key: answer yes or no."
  end
  s.transpose = YES[transpose] == true
  return s
end

function M.load_settings()
  local s = {}
  for _, key in ipairs(M.SETTING_KEYS) do
    local stored = reaper.GetExtState(M.SECTION, key)
    s[key] = stored ~= "" and stored or M.DEFAULTS[key]
  end
  -- Stored values are strings: go through the same checks as the dialog, defaults for anything bad.
  local valid = M.validate_settings({ s.server, tostring(s.k), s.instrument, s.executable, tostring(s.timeout),
                                      s.key, tostring(s.transpose) })
  if valid then return valid end
  local defaults = {}
  for key, value in pairs(M.DEFAULTS) do defaults[key] = value end
  return defaults
end

function M.save_settings(s)
  for i, value in ipairs(M.settings_fields(s)) do
    reaper.SetExtState(M.SECTION, M.SETTING_KEYS[i], value, true)
  end
end

------------------------------------------------------------------------------------------------
-- REAPER: messages, the last query's state
------------------------------------------------------------------------------------------------

function M.message(text)
  reaper.ShowMessageBox(text, M.TITLE, 0)
end

-- The last query lives in the project (it is about this project's time selection and tracks), as
-- JSON: the matches, which one is shown, and where.
function M.save_state(state)
  reaper.SetProjExtState(0, M.SECTION, M.STATE_KEY, json.encode(state))
end

function M.load_state()
  local _, text = reaper.GetProjExtState(0, M.SECTION, M.STATE_KEY)
  if not text or text == "" then return nil end
  local ok, state = pcall(json.decode, text)
  if not ok or type(state) ~= "table" or type(state.matches) ~= "table" or #state.matches == 0 then return nil end
  return state
end

------------------------------------------------------------------------------------------------
-- REAPER: rendering the mix
------------------------------------------------------------------------------------------------

-- Every render setting this script changes; each is read first and written back afterwards.
M.RENDER_NUMBERS = {
  "RENDER_SETTINGS", "RENDER_BOUNDSFLAG", "RENDER_STARTPOS", "RENDER_ENDPOS", "RENDER_SRATE",
  "RENDER_CHANNELS", "RENDER_TAILFLAG", "RENDER_ADDTOPROJ", "RENDER_DITHER", "RENDER_NORMALIZE",
}
M.RENDER_STRINGS = { "RENDER_FORMAT", "RENDER_FORMAT2", "RENDER_FILE", "RENDER_PATTERN" }

local function save_render_settings()
  local saved = { numbers = {}, strings = {} }
  for _, key in ipairs(M.RENDER_NUMBERS) do saved.numbers[key] = reaper.GetSetProjectInfo(0, key, 0, false) end
  for _, key in ipairs(M.RENDER_STRINGS) do
    local _, value = reaper.GetSetProjectInfo_String(0, key, "", false)
    saved.strings[key] = value
  end
  return saved
end

local function restore_render_settings(saved)
  for _, key in ipairs(M.RENDER_STRINGS) do reaper.GetSetProjectInfo_String(0, key, saved.strings[key], true) end
  for _, key in ipairs(M.RENDER_NUMBERS) do reaper.GetSetProjectInfo(0, key, saved.numbers[key], true) end
end

-- Renders the master mix from start_s to end_s into directory/name.wav. The user's render
-- settings are restored afterwards, also when the render fails or raises an error.
-- Returns the path, or nil and a message.
function M.render_master(start_s, end_s, directory, name)
  local path = directory .. separator() .. name .. ".wav"
  local saved = save_render_settings()
  local ok, err = pcall(function()
    local strings = { RENDER_FORMAT = "evaw", RENDER_FORMAT2 = "", RENDER_FILE = directory, RENDER_PATTERN = name }
    local numbers = {
      RENDER_SETTINGS = 0,     -- the master mix (no stems, no render matrix, no selected items)
      RENDER_BOUNDSFLAG = 0,   -- custom time bounds: the two below
      RENDER_STARTPOS = start_s,
      RENDER_ENDPOS = end_s,
      RENDER_SRATE = 0,        -- the project's rate: the server resamples anyway
      RENDER_CHANNELS = 2,     -- the server mixes down itself, as it does for every query
      RENDER_TAILFLAG = 0,     -- no tail: the window must be exactly what was selected
      RENDER_ADDTOPROJ = 0,    -- do not add the file to the project, and render it even if it is silent
      RENDER_DITHER = 0,
      RENDER_NORMALIZE = 0,    -- no normalising, limiting, fades or trimming
    }
    for _, key in ipairs(M.RENDER_STRINGS) do reaper.GetSetProjectInfo_String(0, key, strings[key], true) end
    for _, key in ipairs(M.RENDER_NUMBERS) do reaper.GetSetProjectInfo(0, key, numbers[key], true) end
    reaper.Main_OnCommand(M.RENDER_ACTION, 0)
  end)
  restore_render_settings(saved)
  if not ok then error(err, 0) end
  if not reaper.file_exists(path) then
    return nil, "REAPER did not render the time selection to\n" .. path .. "\n\n(Was the render cancelled?)"
  end
  return path
end

-- A folder for the rendered mix and the command script. ExecProcess gets the script's path
-- between double quotes: on macOS/Linux keep to a folder whose name needs no quoting at all.
function M.temp_dir()
  if M.is_windows() then
    local dir = os.getenv("TEMP") or os.getenv("TMP") or reaper.GetResourcePath()
    return (dir:gsub("[\\/]+$", ""))
  end
  local dir = os.getenv("TMPDIR")
  if not dir or not dir:match("^/[%w%._%-/+,:@~]*$") then dir = "/tmp" end
  return (dir:gsub("(.)/+$", "%1"))
end

------------------------------------------------------------------------------------------------
-- REAPER: asking the server
------------------------------------------------------------------------------------------------

-- The project's tempo over start_s..end_s in quarter notes per minute (REAPER's BPM): the
-- average, so that a tempo change or ramp inside the window counts as it sounds in the render.
function M.project_tempo(start_s, end_s)
  local quarters = reaper.TimeMap2_timeToQN(0, end_s) - reaper.TimeMap2_timeToQN(0, start_s)
  return quarters * 60 / (end_s - start_s)
end

-- Writes the command script that runs the client on `mix_path`; returns the line for ExecProcess
-- and the script's path (to remove afterwards), or nil and a message.
function M.prepare_command(settings, mix_path, instrument, tempo)
  local windows = M.is_windows()
  local text, why = M.command_script(M.client_argv(settings, mix_path, instrument, tempo), windows)
  if not text then return nil, why end
  local script = M.temp_dir() .. separator() .. unique_name("stemserver-query") .. (windows and ".cmd" or ".sh")
  local line
  line, why = M.exec_line(script, windows)
  if not line then return nil, why end
  local file = io.open(script, "wb")
  if not file then return nil, "Cannot write the temporary file " .. script end
  file:write(text)
  file:close()
  return line, script
end

-- Runs the stemserver client on the rendered mix; returns the result, or nil and a message.
function M.query(settings, mix_path, instrument, tempo)
  local line, script = M.prepare_command(settings, mix_path, instrument, tempo)
  if not line then return nil, script end
  -- Longer than the client's own timeout, which then reports a missing server itself.
  local ok, raw = pcall(reaper.ExecProcess, line, math.floor((settings.timeout + 60) * 1000))
  os.remove(script)
  if not ok then error(raw, 0) end
  return M.interpret(raw, settings)
end

------------------------------------------------------------------------------------------------
-- REAPER: items and tracks
------------------------------------------------------------------------------------------------

local function item_guid(item)
  local _, guid = reaper.GetSetMediaItemInfo_String(item, "GUID", "", false)
  return guid
end

local function find_item(guid)
  if not guid then return nil end
  for i = 0, reaper.CountMediaItems(0) - 1 do
    local item = reaper.GetMediaItem(0, i)
    if item_guid(item) == guid then return item end
  end
end

local function find_track(guid)
  if not guid then return nil end
  for i = 0, reaper.CountTracks(0) - 1 do
    local track = reaper.GetTrack(0, i)
    if reaper.GetTrackGUID(track) == guid then return track end
  end
end

-- Runs fn between Undo_BeginBlock and Undo_EndBlock: whatever it does is one undo point, and the
-- block is closed even if fn raises an error.
local function undo_block(description, fn)
  reaper.PreventUIRefresh(1)
  reaper.Undo_BeginBlock()
  local ok, a, b = pcall(fn)
  reaper.Undo_EndBlock(description, -1)
  reaper.PreventUIRefresh(-1)
  reaper.UpdateArrange()
  if not ok then error(a, 0) end
  return a, b
end

-- Puts state.matches[state.index] on `track` (a new track named after the instrument when nil),
-- lined up with the query's time selection, at the project's tempo and, if `transpose`, in the
-- mix's key. Call inside an undo block.
local function add_stem_item(state, track, transpose)
  local match = state.matches[state.index]
  local place = M.placement(match, state.selection_start, state.selection_end, state.window_start)
  if not track then
    local index = reaper.CountTracks(0)
    reaper.InsertTrackAtIndex(index, true)
    track = reaper.GetTrack(0, index)
    reaper.GetSetMediaTrackInfo_String(track, "P_NAME", state.instrument, true)
  end
  local item = reaper.AddMediaItemToTrack(track)
  local take = reaper.AddTakeToMediaItem(item)
  reaper.SetMediaItemTake_Source(take, reaper.PCM_Source_CreateFromFile(match.path))
  reaper.SetMediaItemTakeInfo_Value(take, "D_STARTOFFS", place.offset)  -- in the source's seconds, whatever the rate
  reaper.SetMediaItemTakeInfo_Value(take, "D_PLAYRATE", place.rate)
  reaper.SetMediaItemTakeInfo_Value(take, "B_PPITCH", 1)  -- the stretch changes the tempo, not the pitch
  reaper.SetMediaItemTakeInfo_Value(take, "D_PITCH", M.pitch(match, transpose))
  reaper.GetSetMediaItemTakeInfo_String(take, "P_NAME", M.take_name(match, state.index, #state.matches, transpose),
                                        true)
  reaper.SetMediaItemInfo_Value(item, "D_POSITION", place.position)
  reaper.SetMediaItemInfo_Value(item, "D_LENGTH", place.length)
  -- Set either way: REAPER's preference may loop new items by default, and a one-shot must not repeat.
  reaper.SetMediaItemInfo_Value(item, "B_LOOPSRC", place.loop and 1 or 0)
  reaper.UpdateItemInProject(item)
  return item, track
end

local function missing_file_message(path)
  return "The stem is not on this computer:\n" .. path .. "\n\n"
    .. "(The server names files of its own library: if it runs on another machine, its library must be "
    .. "reachable here under the same path.)"
end

------------------------------------------------------------------------------------------------
-- Entry points
------------------------------------------------------------------------------------------------

-- Runs an entry point; an unexpected Lua error becomes a message rather than REAPER's console.
function M.main(fn, ...)
  local ok, err = xpcall(fn, debug.traceback, ...)
  if not ok then M.message("The stemserver script failed unexpectedly:\n\n" .. tostring(err)) end
  return ok
end

local function ask_instrument(default)
  local ok, text = reaper.GetUserInputs("stemserver: find a stem", 1,
                                        "Instrument (e.g. bass or nylon guitar),extrawidth=150,separator=\n",
                                        default)
  if not ok then return nil end
  text = trim(text)
  if text == "" then return nil end
  return text
end

local function choose(matches)
  local x, y = reaper.GetMousePosition()
  gfx.init("stemserver", 0, 0, 0, x, y)  -- showmenu needs a gfx window: a zero-size one at the mouse
  gfx.x, gfx.y = gfx.screentoclient(x, y)
  local choice = gfx.showmenu(table.concat(M.menu_entries(matches), "|"))
  gfx.quit()
  if choice < 1 or choice > #matches then return nil end
  return choice
end

-- "Find stem for time selection".
function M.find_stem()
  local settings = M.load_settings()
  local selection_start, selection_end = reaper.GetSet_LoopTimeRange(false, false, 0, 0, false)
  if selection_end - selection_start < M.MIN_SECONDS then
    return M.message("Select at least 2 seconds of the mix with the time selection (8 seconds works best), "
                     .. "then run this again.")
  end
  local instrument = ask_instrument(settings.instrument)
  if not instrument then return end

  local window_start = math.max(selection_start, selection_end - M.QUERY_SECONDS)
  local mix, why = M.render_master(window_start, selection_end, M.temp_dir(), unique_name("stemserver-mix"))
  if not mix then return M.message(why) end
  local ok, result
  ok, result, why = pcall(M.query, settings, mix, instrument, M.project_tempo(window_start, selection_end))
  os.remove(mix)  -- whatever happened: it was only for this query
  if not ok then error(result, 0) end
  if not result then return M.message(why) end
  if #result.matches == 0 then
    return M.message("No stem of the library matched \"" .. instrument .. "\" (is the library empty?).")
  end

  local index = choose(result.matches)
  if not index then return end
  local state = {
    instrument = instrument, matches = result.matches, index = index,
    selection_start = selection_start, selection_end = selection_end, window_start = window_start,
  }
  if not reaper.file_exists(state.matches[index].path) then
    return M.message(missing_file_message(state.matches[index].path))
  end
  local item, track = undo_block("stemserver: insert " .. instrument .. " stem", function()
    return add_stem_item(state, nil, settings.transpose)
  end)
  state.item_guid, state.track_guid = item_guid(item), reaper.GetTrackGUID(track)
  M.save_state(state)
end

-- "Next result" (step 1) and "Previous result" (step -1): replaces the stem the last query
-- inserted with the next or previous of its results, wrapping around at either end.
function M.step_result(step)
  local state = M.load_state()
  if not state then
    return M.message("There is no result to step through yet: run \"stemserver: Find stem for time selection\" "
                     .. "first.")
  end
  local count = #state.matches
  local index = (state.index - 1 + step) % count + 1
  local match = state.matches[index]
  if not reaper.file_exists(match.path) then return M.message(missing_file_message(match.path)) end

  -- The item the last run inserted, wherever the user moved it; else its track; else a new track.
  local old_item = find_item(state.item_guid)
  local track = old_item and reaper.GetMediaItem_Track(old_item) or find_track(state.track_guid)
  local transpose = M.load_settings().transpose
  local item
  item, track = undo_block(string.format("stemserver: %s %s stem", step > 0 and "next" or "previous",
                                         state.instrument), function()
    if old_item then reaper.DeleteTrackMediaItem(reaper.GetMediaItem_Track(old_item), old_item) end
    state.index = index
    return add_stem_item(state, track, transpose)
  end)
  state.item_guid, state.track_guid = item_guid(item), reaper.GetTrackGUID(track)
  M.save_state(state)
end

-- "Settings": one dialog for all of them, asked again until the values are valid or cancelled.
function M.edit_settings()
  local values = M.settings_fields(M.load_settings())
  local captions = table.concat(M.SETTING_CAPTIONS, ",") .. ",extrawidth=250,separator=\n"
  while true do
    local ok, text = reaper.GetUserInputs("stemserver settings", #values, captions, table.concat(values, "\n"))
    if not ok then return nil end
    values = split(text, "\n")
    local new, why = M.validate_settings(values)
    if new then
      M.save_settings(new)
      return new
    end
    M.message(why)
  end
end

return M
