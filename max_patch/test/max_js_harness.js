#!/usr/bin/env node
// Runs a classic Max [js] file under Node with a small stand-in for Max's JavaScript API, so the
// patch's helpers can be tested without Max (tests/test_max_patch.py drives it).
//
// The stand-in: outlet() (captured), post(), error(), arrayfromargs(), jsarguments, the
// inlets/outlets/autowatch globals, setinletassist/setoutletassist, a Buffer object over arrays of
// float32 samples (framecount, channelcount, length, peek, poke, send), a Task object on a fake clock
// (schedule, repeat, cancel, interval) and a Date whose time the driver sets. Messages are
// dispatched as Max does: to the function named like the message, unless it is marked .local.
//
// Protocol: one JSON command per line on stdin, one JSON reply per line on stdout.
//   {"cmd": "load", "file": F, "args": [...], "buffers": {NAME: BUF}, "clock": MS, "os": "macintosh"}
//   {"cmd": "buffers", "buffers": {NAME: BUF}}          add or replace buffers
//   {"cmd": "send", "message": [SELECTOR, ARGS...]}    a message into inlet 0
//   {"cmd": "advance", "ms": N}                         move the clock, running the tasks due
//   {"cmd": "dump", "buffer": NAME}                     a buffer's contents
// BUF is {"rate": HZ, "channels": [BASE64 of little-endian float32, one per channel]}.
// Every reply: {"outputs": [[OUTLET, [ATOMS...]], ...], "times": [clock of each output], "posts": [...],
// "clock": MS, "pending": TASKS} plus "buffer" for dump, or {"error": TEXT}.

"use strict";

const fs = require("fs");
const vm = require("vm");
const readline = require("readline");

let clock = 0;
let context = null;
let outputs = [];
let times = []; // the clock at each output
let posts = [];
let tasks = []; // {task, due}
const buffers = {};

function decodeChannel(b64) {
    const bytes = Buffer.from(b64, "base64");
    const copy = new Uint8Array(bytes); // aligned copy
    return new Float32Array(copy.buffer, 0, copy.length / 4);
}

function encodeChannel(samples) {
    return Buffer.from(samples.buffer, samples.byteOffset, samples.byteLength).toString("base64");
}

function setBuffers(spec) {
    for (const name of Object.keys(spec || {})) {
        buffers[name] = {rate: spec[name].rate, channels: spec[name].channels.map(decodeChannel)};
    }
}

// Max's Buffer: channels are 1-based, frames 0-based; peek returns an Array of numbers.
class MaxBuffer {
    constructor(name) {
        this.name = String(name);
    }
    get data() {
        return buffers[this.name];
    }
    framecount() {
        return this.data ? this.data.channels[0].length : 0;
    }
    channelcount() {
        return this.data ? this.data.channels.length : 0;
    }
    length() {
        return this.data ? this.framecount() * 1000 / this.data.rate : 0;
    }
    peek(channel, frame, count) {
        const samples = this.data.channels[channel - 1];
        if (frame < 0 || frame + count > samples.length) {
            throw new Error(`peek(${channel}, ${frame}, ${count}) outside ${this.name}`);
        }
        return Array.from(samples.subarray(frame, frame + count));
    }
    poke(channel, frame, values) {
        const samples = this.data.channels[channel - 1];
        values = typeof values === "number" ? [values] : values;
        if (frame < 0 || frame + values.length > samples.length) {
            throw new Error(`poke(${channel}, ${frame}, ${values.length} values) outside ${this.name}`);
        }
        samples.set(values, frame);
    }
    send(...message) {
        posts.push(`buffer~ ${this.name}: ${message.join(" ")}`);
    }
}

// Max's Task on the fake clock.
class Task {
    constructor(fn, obj, args) {
        this.fn = fn;
        this.obj = obj;
        this.args = args || [];
        this.interval = 500;
        this.running = false;
        this.remaining = 0;
    }
    execute() {
        this.fn.apply(this.obj, this.args);
    }
    schedule(delay) {
        this.cancel();
        this.remaining = 1;
        this.running = true;
        tasks.push({task: this, due: clock + (delay || 0)});
    }
    repeat(count, initialDelay) {
        this.cancel();
        this.remaining = count === undefined || count < 0 ? Infinity : count;
        this.running = true;
        tasks.push({task: this, due: clock + (initialDelay || 0)});
    }
    cancel() {
        this.running = false;
        tasks = tasks.filter((entry) => entry.task !== this);
    }
}

function FakeDate() {
    return {getTime: () => clock, valueOf: () => clock};
}
FakeDate.now = () => clock;

function atoms(args) {
    const list = args.length === 1 && Array.isArray(args[0]) ? args[0] : args;
    return list.map((atom) => {
        if (typeof atom === "number") {
            if (!Number.isFinite(atom)) {
                throw new Error(`outlet: ${atom} is not a number Max can send`);
            }
            return atom;
        }
        if (typeof atom === "boolean") {
            return atom ? 1 : 0;
        }
        return String(atom);
    });
}

function load(command) {
    setBuffers(command.buffers);
    clock = command.clock || 0;
    tasks = [];
    const sandbox = {
        jsarguments: [command.file.replace(/^.*\//, "")].concat(command.args || []),
        inlet: 0,
        messagename: "",
        max: {os: command.os || "macintosh"},
        Buffer: MaxBuffer,
        Task: Task,
        Date: FakeDate,
        outlet: (n, ...args) => {
            outputs.push([n, atoms(args)]);
            times.push(clock);
        },
        post: (...args) => posts.push(args.join(" ")),
        error: (...args) => posts.push("error: " + args.join(" ")),
        arrayfromargs: (...args) => {
            const list = args.length === 2 ? [args[0]].concat(Array.from(args[1])) : Array.from(args[0]);
            return list;
        },
        setinletassist: () => {},
        setoutletassist: () => {},
    };
    context = vm.createContext(sandbox);
    vm.runInContext(fs.readFileSync(command.file, "utf8"), context, {filename: command.file});
    if (typeof context.inlets !== "number" || typeof context.outlets !== "number") {
        throw new Error("the script must set inlets and outlets");
    }
    return {inlets: context.inlets, outlets: context.outlets};
}

function dispatch(message) {
    const [selector, ...args] = message;
    context.messagename = String(selector);
    let handler = null;
    if (typeof selector === "number") {
        handler = Number.isInteger(selector) ? context.msg_int : context.msg_float;
        args.unshift(selector);
    } else if (typeof context[selector] === "function" && !context[selector].local) {
        handler = context[selector];
    } else if (typeof context.anything === "function") {
        handler = context.anything;
    }
    if (!handler) {
        posts.push(`js: doesn't understand "${selector}"`);
        return;
    }
    handler.apply(context, args);
}

function advance(ms) {
    const target = clock + ms;
    for (;;) {
        tasks.sort((a, b) => a.due - b.due);
        if (tasks.length === 0 || tasks[0].due > target) {
            break;
        }
        const entry = tasks.shift();
        clock = Math.max(clock, entry.due);
        const task = entry.task;
        task.remaining -= 1;
        if (task.remaining > 0) {
            tasks.push({task: task, due: entry.due + Math.max(1, task.interval)});
        } else {
            task.running = false;
        }
        task.execute();
    }
    clock = target;
}

function handle(command) {
    outputs = [];
    times = [];
    posts = [];
    const reply = {};
    switch (command.cmd) {
        case "load":
            Object.assign(reply, load(command));
            break;
        case "buffers":
            setBuffers(command.buffers);
            break;
        case "send":
            dispatch(command.message);
            break;
        case "advance":
            advance(command.ms);
            break;
        case "dump": {
            const data = buffers[command.buffer];
            reply.buffer = {rate: data.rate, channels: data.channels.map(encodeChannel)};
            break;
        }
        default:
            throw new Error(`unknown command ${command.cmd}`);
    }
    return Object.assign(reply, {outputs: outputs, times: times, posts: posts, clock: clock, pending: tasks.length});
}

const lines = readline.createInterface({input: process.stdin});
lines.on("line", (line) => {
    if (!line.trim()) {
        return;
    }
    let reply;
    try {
        reply = handle(JSON.parse(line));
    } catch (e) {
        reply = {error: String(e && e.stack ? e.stack : e), outputs: outputs, posts: posts};
    }
    process.stdout.write(JSON.stringify(reply) + "\n");
});
