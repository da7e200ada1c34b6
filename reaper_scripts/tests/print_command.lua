-- Prints what the "Find stem for time selection" script hands to reaper.ExecProcess for a mix, so
-- that tests/test_reaper_scripts.py can run exactly that against a real server.
--
--   lua5.4 reaper_scripts/tests/print_command.lua EXECUTABLE SERVER MIX INSTRUMENT K
--
-- Writes the command script into $TMPDIR (as the script does) and prints two lines: the ExecProcess
-- line, then the script's path.

local here = arg[0]:match("^(.*[/\\])") or "./"
reaper = { GetOS = function() return "linux-x86_64" end, time_precise = os.clock }  -- all the library asks here
local lib = dofile(here .. "../stemserver_lib.lua")

local executable, server, mix, instrument, k = table.unpack(arg, 1, 5)
local settings = { executable = executable, server = server, k = tonumber(k), timeout = 20 }
local line, script = lib.prepare_command(settings, mix, instrument)
if not line then
  io.stderr:write(script, "\n")
  os.exit(1)
end
print(line)
print(script)
