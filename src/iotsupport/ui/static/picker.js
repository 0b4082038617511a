// A searchable device picker (the ARIA combobox pattern): type part of a MAC or a name and
// pick from the first matches, so thousands of devices never become thousands of options.

import { el } from "./common.js";

const SHOWN = 20;

function label(config) {
  return config.device_name ? `${config.mac_address} — ${config.device_name}` : config.mac_address;
}

/**
 * Wire `input` (role=combobox) to `list` (role=listbox). `status` says how many match;
 * `onPick(id)` runs when a device is picked. Returns {setDevices(configs), pick(id), value}.
 */
export function devicePicker({ input, list, status, onPick }) {
  let devices = []; // [{id, label, search}]
  let shown = [];
  let active = -1;
  let picked = null;

  function matches(text) {
    const terms = text.toLowerCase().split(/\s+/).filter(Boolean);
    return devices.filter((device) => terms.every((term) => device.search.includes(term)
      || device.search.includes(term.replace(/[:\-.]/g, ""))));
  }

  function close() {
    list.hidden = true;
    input.setAttribute("aria-expanded", "false");
    input.removeAttribute("aria-activedescendant");
    active = -1;
  }

  function highlight(index) {
    active = index;
    for (const [at, option] of [...list.children].entries()) option.setAttribute("aria-selected", String(at === index));
    if (index < 0) { input.removeAttribute("aria-activedescendant"); return; }
    const option = list.children[index];
    input.setAttribute("aria-activedescendant", option.id);
    option.scrollIntoView({ block: "nearest" });
  }

  function open() {
    const found = matches(input.value === picked?.label ? "" : input.value);
    shown = found.slice(0, SHOWN);
    list.replaceChildren(...shown.map((device, index) => el("li", {
      id: `copy-option-${device.id}`, role: "option", "aria-selected": "false",
      onmousedown: (event) => event.preventDefault(), // keep the focus in the input
      onclick: () => choose(index),
    }, device.label)));
    const count = found.length === 1 ? "1 device matches" : `${found.length} devices match`;
    status.textContent = found.length === 0 ? "No device matches."
      : found.length > shown.length ? `${count}; the first ${shown.length} are listed: type more to narrow them.`
        : `${count}.`;
    list.hidden = shown.length === 0;
    input.setAttribute("aria-expanded", String(shown.length > 0));
    highlight(-1);
  }

  function choose(index) {
    const device = shown[index];
    if (!device) return;
    picked = device;
    input.value = device.label;
    close();
    status.textContent = `Copying ${device.label}.`;
    onPick(device.id);
  }

  input.addEventListener("input", open);
  input.addEventListener("focus", () => { if (!input.disabled) open(); });
  input.addEventListener("blur", close);
  input.addEventListener("keydown", (event) => {
    if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      event.preventDefault();
      if (list.hidden) { open(); return; }
      const step = event.key === "ArrowDown" ? 1 : -1;
      highlight(Math.max(0, Math.min(shown.length - 1, active + step)));
    } else if (event.key === "Enter") {
      if (list.hidden) return;
      event.preventDefault(); // not the form's submit
      choose(active >= 0 ? active : 0);
    } else if (event.key === "Escape" && !list.hidden) {
      event.preventDefault();
      close();
    }
  });

  return {
    setDevices(configs) {
      devices = configs.map((config) => ({
        id: config.id,
        label: label(config),
        search: [config.mac_address, config.mac_address.replaceAll(":", ""), config.device_name]
          .filter(Boolean).join(" ").toLowerCase(),
      }));
      status.textContent = devices.length ? `${devices.length} devices: type to search.` : "No devices yet.";
    },
    /** Show `id` as picked without running onPick (a device given in the URL). */
    pick(id) {
      picked = devices.find((device) => String(device.id) === String(id)) ?? null;
      if (picked) { input.value = picked.label; status.textContent = `Copying ${picked.label}.`; }
    },
    get value() { return picked?.id ?? null; },
  };
}
