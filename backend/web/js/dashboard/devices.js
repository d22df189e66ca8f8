// The camera and microphone: a preview and a picker for each. Switching a
// device swaps one track inside the same MediaStream, so a running
// publication only needs `RTCRtpSender.replaceTrack` (no new offer).

import { el } from "../api.js";
import { field } from "./ui.js";

const KINDS = {
  video: { input: "videoinput", testid: "camera-select", label: "Camera" },
  audio: { input: "audioinput", testid: "mic-select", label: "Microphone" },
};

/**
 * `onTrack(kind, track)` runs after a switch; `onError(err)` when a device
 * cannot be opened. `stream()` is the current MediaStream (or null).
 */
export function devicePanel({ onTrack, onError }) {
  const video = el("video", {
    "data-testid": "preview",
    autoplay: true,
    muted: true, // the host must not hear themselves
    playsinline: true,
    "aria-label": "Camera preview",
  });
  video.muted = true;
  const selects = {};
  for (const [kind, spec] of Object.entries(KINDS)) {
    selects[kind] = el("select", { "data-testid": spec.testid, disabled: true });
    selects[kind].addEventListener("change", () => switchDevice(kind, selects[kind].value));
  }
  let stream = null;

  function currentId(kind) {
    const track = stream?.getTracks().find((t) => t.kind === kind);
    return track?.getSettings().deviceId || "";
  }

  // Labels are only readable once access was granted, hence after open().
  async function refreshLists() {
    const devices = await navigator.mediaDevices.enumerateDevices();
    for (const [kind, spec] of Object.entries(KINDS)) {
      const found = devices.filter((d) => d.kind === spec.input);
      const options = found.map((device, index) =>
        el("option", { value: device.deviceId }, device.label || `${spec.label} ${index + 1}`),
      );
      selects[kind].replaceChildren(...options);
      selects[kind].value = currentId(kind);
      selects[kind].disabled = found.length === 0;
    }
  }

  async function switchDevice(kind, deviceId) {
    try {
      const fresh = await navigator.mediaDevices.getUserMedia({ [kind]: { deviceId: { exact: deviceId } } });
      const track = fresh.getTracks()[0];
      for (const old of stream.getTracks().filter((t) => t.kind === kind)) {
        stream.removeTrack(old);
        old.stop();
      }
      stream.addTrack(track);
      video.srcObject = stream;
      await onTrack(kind, track);
    } catch (err) {
      selects[kind].value = currentId(kind);
      onError(err);
    }
  }

  /** Asks for the camera and microphone (the browser may prompt). */
  async function open() {
    if (stream) return stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ video: true, audio: true });
      video.srcObject = stream;
      await refreshLists();
      navigator.mediaDevices.addEventListener("devicechange", refreshLists);
      return stream;
    } catch (err) {
      onError(err);
      return null;
    }
  }

  /** Releases the devices (the camera light goes off). */
  function close() {
    navigator.mediaDevices?.removeEventListener("devicechange", refreshLists);
    stream?.getTracks().forEach((track) => track.stop());
    stream = null;
    video.srcObject = null;
    Object.values(selects).forEach((select) => (select.disabled = true));
  }

  const node = el(
    "section",
    { class: "card devices", "aria-labelledby": "devices-heading" },
    el("h2", { id: "devices-heading", class: "visually-hidden" }, "Camera and microphone"),
    video,
    el("div", { class: "device-pickers" }, field(KINDS.video.label, selects.video), field(KINDS.audio.label, selects.audio)),
  );
  return { node, open, close, stream: () => stream };
}
