-- @noindex
-- @description stemserver: settings (server address, k, default instrument, executable, timeout)
-- @author stemserver
-- @version 0.2.0
-- @about
--   Part of the "stemserver: find a stem that fits the time selection" package, which installs it.

-- One dialog for every setting; they are kept with SetExtState (REAPER's reaper-extstate.ini).
local here = ({ reaper.get_action_context() })[2]:match("^(.*[/\\])") or ""
local stemserver = dofile(here .. "stemserver_lib.lua")
stemserver.main(stemserver.edit_settings)
