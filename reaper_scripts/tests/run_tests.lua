-- Runs the Lua tests of the stemserver ReaScripts with a mock REAPER (mock_reaper.lua).
--
--   lua5.4 reaper_scripts/tests/run_tests.lua           every test
--   lua5.4 reaper_scripts/tests/run_tests.lua NAME...   only these
--   lua5.4 reaper_scripts/tests/run_tests.lua --list    the names, one a line
--
-- Tests that need the real server (the end-to-end ones, and the decoding of a reply captured from
-- it) read their inputs from STEMSERVER_TEST_* environment variables, which
-- tests/test_reaper_scripts.py sets; without them they are skipped. Exit status 0 when nothing failed.

local here = arg[0]:match("^(.*[/\\])") or "./"

T = { here = here, root = here .. "../", names = {}, bodies = {} }

function T.test(name, body)
  assert(not T.bodies[name], "two tests named " .. name)
  T.names[#T.names + 1] = name
  T.bodies[name] = body
end

local function show(value, depth)
  depth = depth or 0
  if type(value) == "string" then return string.format("%q", value) end
  if type(value) ~= "table" or depth > 2 then return tostring(value) end
  local keys = {}
  for k in pairs(value) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  local parts = {}
  for _, k in ipairs(keys) do parts[#parts + 1] = tostring(k) .. "=" .. show(value[k], depth + 1) end
  return "{" .. table.concat(parts, ", ") .. "}"
end

local function deep_equal(a, b)
  if a == b then return true end
  if type(a) ~= "table" or type(b) ~= "table" then return false end
  for k, v in pairs(a) do if not deep_equal(v, b[k]) then return false end end
  for k in pairs(b) do if a[k] == nil then return false end end
  return true
end
T.deep_equal = deep_equal

function T.eq(actual, expected, what)
  if not deep_equal(actual, expected) then
    error(string.format("%s: expected %s, got %s", what or "value", show(expected), show(actual)), 2)
  end
end

function T.near(actual, expected, tolerance, what)
  if type(actual) ~= "number" or math.abs(actual - expected) > tolerance then
    error(string.format("%s: expected %s +- %s, got %s", what or "value", expected, tolerance, show(actual)), 2)
  end
end

function T.ok(condition, what)
  if not condition then error(what or "condition failed", 2) end
end

function T.contains(text, needle, what)
  if type(text) ~= "string" or not text:find(needle, 1, true) then
    error(string.format("%s: %s does not contain %s", what or "text", show(text), show(needle)), 2)
  end
end

function T.raises(fn, needle, what)
  local ok, err = pcall(fn)
  if ok then error((what or "call") .. ": expected an error", 2) end
  if needle and not tostring(err):find(needle, 1, true) then
    error(string.format("%s: error %s does not mention %s", what or "call", show(tostring(err)), show(needle)), 2)
  end
  return err
end

local SKIP = {}
function T.skip(reason) error({ [SKIP] = reason }, 0) end

function T.env(name)  -- a STEMSERVER_TEST_* input, or skip the test when it is not set
  local value = os.getenv(name)
  if not value or value == "" then T.skip(name .. " is not set (tests/test_reaper_scripts.py sets it)") end
  return value
end

-- A fresh copy of the library, as a script would load it.
function T.lib()
  return dofile(T.root .. "stemserver_lib.lua")
end

-- A scratch folder for one test, removed by the runner afterwards.
function T.tmpdir()
  local base = os.getenv("STEMSERVER_TEST_TMP") or "/tmp"
  local path = os.tmpname()  -- creates a file; use its unique name for a folder instead
  os.remove(path)
  path = base .. "/lua-" .. path:match("([^/]+)$")
  assert(os.execute("mkdir -p '" .. path .. "'"))
  T.cleanup[#T.cleanup + 1] = path
  return path
end

function T.write(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
  return path
end

function T.read(path)
  local f = assert(io.open(path, "rb"))
  local text = f:read("a")
  f:close()
  return text
end

for _, file in ipairs({ "test_json.lua", "test_command.lua", "test_render.lua", "test_placement.lua",
                        "test_flows.lua", "test_end_to_end.lua" }) do
  dofile(here .. file)
end

if arg[1] == "--list" then
  for _, name in ipairs(T.names) do print(name) end
  os.exit(0)
end

local selected = #arg > 0 and { table.unpack(arg) } or T.names
local failed, skipped = 0, 0
for _, name in ipairs(selected) do
  local body = T.bodies[name]
  if not body then
    print("FAIL " .. name .. ": no such test")
    failed = failed + 1
  else
    T.cleanup = {}
    local saved_reaper, saved_gfx = _G.reaper, _G.gfx
    local ok, err = xpcall(body, function(e)
      if type(e) == "table" and e[SKIP] then return e end
      return debug.traceback(tostring(e), 2)
    end)
    _G.reaper, _G.gfx = saved_reaper, saved_gfx
    for _, path in ipairs(T.cleanup) do os.execute("rm -rf '" .. path .. "'") end
    if ok then
      print("ok   " .. name)
    elseif type(err) == "table" and err[SKIP] then
      print("skip " .. name .. ": " .. err[SKIP])
      skipped = skipped + 1
    else
      print("FAIL " .. name .. ": " .. tostring(err))
      failed = failed + 1
    end
  end
end
print(string.format("%d tests, %d failed, %d skipped", #selected, failed, skipped))
os.exit(failed == 0 and 0 or 1)
